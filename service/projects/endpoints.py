from fastapi import APIRouter, Response, status

from service.auth.dependencies import CurrentPrincipal, RecentAdminPrincipal
from service.connections.gateway import QualtricsGatewayDep
from service.db import SessionDep
from service.errors import problem_responses
from service.integrations.dependencies import IfMatch, IntegrationId
from service.integrations.service import ETAG_KIND
from service.kit.etag import etag_for
from service.models import QualtricsProject
from service.projects.schemas import Project, ProjectCreate, ProjectTarget
from service.projects.service import project_service

router = APIRouter(prefix="/v1/integrations/{integration_id}", tags=["setup"])


def project_view(project: QualtricsProject) -> Project:
    return Project(
        survey_id=project.survey_id,
        survey_name=project.survey_name,
        published_version_number=project.published_version_number,
        synced_at=project.synced_at,
        created_at=project.created_at,
        targets=[ProjectTarget.from_map(key, entry) for key, entry in project.field_map.items()],
    )


@router.post(
    "/project",
    response_model=Project,
    status_code=status.HTTP_201_CREATED,
    summary="Step 2: create the Qualtrics project",
    responses=problem_responses(400, 401, 403, 404, 409, 412, 422, 503),
)
async def create_project(
    integration_id: IntegrationId,
    data: ProjectCreate,
    principal: RecentAdminPrincipal,
    session: SessionDep,
    gateway: QualtricsGatewayDep,
    response: Response,
    if_match: IfMatch = None,
) -> Project:
    """Create, activate and publish the survey that will receive responses.

    Needs a sign-in within 10 minutes and the credentials of step 1.
    """
    project, integration = await project_service.create(
        session, gateway, principal, integration_id, data, if_match=if_match
    )
    response.headers["ETag"] = etag_for(ETAG_KIND, integration.version)
    return project_view(project)


@router.get(
    "/project",
    response_model=Project,
    summary="Step 2: show the Qualtrics project",
    responses=problem_responses(401, 404, 422),
)
async def get_project(
    integration_id: IntegrationId, principal: CurrentPrincipal, session: SessionDep
) -> Project:
    """The survey, and where each data field lands in it."""
    return project_view(await project_service.get(session, principal, integration_id))
