from fastapi import APIRouter, Response, status

from service.auth.dependencies import CurrentPrincipal, RecentAdminPrincipal
from service.connections.gateway import QualtricsGatewayDep
from service.connections.schemas import QualtricsConnection, QualtricsConnectionIn
from service.connections.service import connection_service
from service.db import SessionDep
from service.errors import problem_responses
from service.integrations.dependencies import IfMatch, IntegrationId
from service.integrations.service import ETAG_KIND
from service.kit.etag import etag_for

router = APIRouter(prefix="/v1/integrations/{integration_id}", tags=["setup"])


@router.put(
    "/qualtrics-connection",
    response_model=QualtricsConnection,
    summary="Step 1: save Qualtrics credentials",
    responses=problem_responses(400, 401, 403, 404, 412, 422, 503),
)
async def put_qualtrics_connection(
    integration_id: IntegrationId,
    data: QualtricsConnectionIn,
    principal: RecentAdminPrincipal,
    session: SessionDep,
    gateway: QualtricsGatewayDep,
    response: Response,
    if_match: IfMatch = None,
) -> QualtricsConnection:
    """Verify the OAuth client against Qualtrics, then store it (the secret encrypted).

    Needs a sign-in within 10 minutes. If the integration has a survey and the new
    credentials cannot reach it, the integration becomes invalid and disabled.
    """
    connection, integration = await connection_service.save(
        session, gateway, principal, integration_id, data, if_match=if_match
    )
    response.headers["ETag"] = etag_for(ETAG_KIND, integration.version)
    return QualtricsConnection.model_validate(connection)


@router.get(
    "/qualtrics-connection",
    response_model=QualtricsConnection,
    summary="Step 1: show the Qualtrics connection",
    responses=problem_responses(401, 404, 422),
)
async def get_qualtrics_connection(
    integration_id: IntegrationId, principal: CurrentPrincipal, session: SessionDep
) -> QualtricsConnection:
    """The saved connection, without its secret."""
    connection = await connection_service.get(session, principal, integration_id)
    return QualtricsConnection.model_validate(connection)


@router.delete(
    "/qualtrics-connection",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Step 1: delete the Qualtrics credentials",
    responses=problem_responses(401, 403, 404, 412, 422),
)
async def delete_qualtrics_connection(
    integration_id: IntegrationId,
    principal: RecentAdminPrincipal,
    session: SessionDep,
    if_match: IfMatch = None,
) -> None:
    """Remove the credentials; the integration becomes invalid and disabled until new ones."""
    await connection_service.delete(session, principal, integration_id, if_match=if_match)
