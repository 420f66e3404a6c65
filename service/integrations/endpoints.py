import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from service.auth.dependencies import AdminPrincipal, CurrentPrincipal, RecentAdminPrincipal
from service.connections.gateway import QualtricsGatewayDep
from service.db import SessionDep
from service.deliveries.dependencies import EnqueueAfterCommit
from service.errors import problem_responses
from service.integrations.dependencies import IfMatch
from service.integrations.enablement import enablement_service
from service.integrations.schemas import Integration as IntegrationSchema
from service.integrations.schemas import IntegrationCreate, IntegrationUpdate, Readiness, StepStatus
from service.integrations.service import ETAG_KIND, integration_service
from service.kit.etag import etag_for
from service.kit.pagination import Page, PageParams, page_params, paginate
from service.models import Integration

router = APIRouter(prefix="/v1", tags=["integrations"])


def _with_etag(response: Response, integration: Integration) -> IntegrationSchema:
    response.headers["ETag"] = etag_for(ETAG_KIND, integration.version)
    return IntegrationSchema.model_validate(integration)


@router.post(
    "/integrations",
    response_model=IntegrationSchema,
    status_code=status.HTTP_201_CREATED,
    summary="Create an integration",
    responses=problem_responses(400, 401, 403, 409, 422),
)
async def create_integration(
    data: IntegrationCreate, principal: AdminPrincipal, session: SessionDep, response: Response
) -> IntegrationSchema:
    """Create a (disabled) integration; then complete its five setup steps."""
    integration = await integration_service.create(session, principal, data)
    response.headers["Location"] = f"/v1/integrations/{integration.id}"
    return _with_etag(response, integration)


@router.get(
    "/integrations",
    response_model=Page[IntegrationSchema],
    summary="List integrations",
    responses=problem_responses(400, 401, 422),
)
async def list_integrations(
    principal: CurrentPrincipal,
    session: SessionDep,
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[IntegrationSchema]:
    """The organization's integrations, newest first."""
    rows, next_cursor = await paginate(
        session,
        integration_service.scoped(principal),
        created_at=Integration.created_at,
        row_id=Integration.id,
        params=page,
    )
    return Page(
        items=[IntegrationSchema.model_validate(row) for row in rows], next_cursor=next_cursor
    )


@router.get(
    "/integrations/{integration_id}",
    response_model=IntegrationSchema,
    summary="Get an integration",
    responses=problem_responses(401, 404, 422),
)
async def get_integration(
    integration_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep, response: Response
) -> IntegrationSchema:
    """One integration, with its ETag for conditional writes."""
    integration = await integration_service.get(session, principal, integration_id)
    return _with_etag(response, integration)


@router.patch(
    "/integrations/{integration_id}",
    response_model=IntegrationSchema,
    summary="Rename an integration",
    responses=problem_responses(400, 401, 403, 404, 409, 412, 422),
)
async def update_integration(
    integration_id: uuid.UUID,
    data: IntegrationUpdate,
    principal: AdminPrincipal,
    session: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> IntegrationSchema:
    """Change the integration's name (send `If-Match` to avoid overwriting another admin)."""
    integration = await integration_service.update(
        session, principal, integration_id, data, if_match=if_match
    )
    return _with_etag(response, integration)


@router.delete(
    "/integrations/{integration_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an integration",
    responses=problem_responses(401, 403, 404, 412, 422),
)
async def delete_integration(
    integration_id: uuid.UUID,
    principal: RecentAdminPrincipal,
    session: SessionDep,
    if_match: IfMatch = None,
) -> None:
    """Delete the integration and its configuration (needs a sign-in within 10 minutes).

    The Qualtrics survey and the responses already in it are left as they are.
    """
    await integration_service.delete(session, principal, integration_id, if_match=if_match)


@router.get(
    "/integrations/{integration_id}/readiness",
    response_model=Readiness,
    tags=["setup"],
    summary="Step 5: which setup steps are complete",
    responses=problem_responses(401, 404, 422),
)
async def get_integration_readiness(
    integration_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep
) -> Readiness:
    """Each setup step with `complete` and, where not, why."""
    integration, steps = await enablement_service.readiness(session, principal, integration_id)
    return Readiness(
        ready=all(state.complete for state in steps),
        enabled=integration.enabled,
        health=integration.health,
        health_reason=integration.health_reason,
        steps=[
            StepStatus(step=state.step, complete=state.complete, reason=state.reason)
            for state in steps
        ],
    )


@router.post(
    "/integrations/{integration_id}/enable",
    response_model=IntegrationSchema,
    tags=["setup"],
    summary="Step 5: enable the integration",
    responses=problem_responses(401, 403, 404, 409, 412, 422, 503),
)
async def enable_integration(
    integration_id: uuid.UUID,
    principal: RecentAdminPrincipal,
    session: SessionDep,
    gateway: QualtricsGatewayDep,
    response: Response,
    enqueuer: EnqueueAfterCommit,
    if_match: IfMatch = None,
) -> IntegrationSchema:
    """Start delivering matches (needs all four steps and a sign-in within 10 minutes).

    409 lists the incomplete steps in `incomplete_steps`. An invalid integration is
    re-checked against Qualtrics first. Held deliveries are released and sent.
    """
    integration, released = await enablement_service.enable(
        session, gateway, principal, integration_id, if_match=if_match
    )
    enqueuer.enqueue(released)
    return _with_etag(response, integration)


@router.post(
    "/integrations/{integration_id}/disable",
    response_model=IntegrationSchema,
    tags=["setup"],
    summary="Disable the integration",
    responses=problem_responses(401, 403, 404, 412, 422),
)
async def disable_integration(
    integration_id: uuid.UUID,
    principal: AdminPrincipal,
    session: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> IntegrationSchema:
    """Stop delivering; matches are held until it is enabled again."""
    integration = await enablement_service.disable(
        session, principal, integration_id, if_match=if_match
    )
    return _with_etag(response, integration)
