import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, status

from service.auth.dependencies import AdminPrincipal, CurrentPrincipal, RecentAdminPrincipal
from service.db import SessionDep
from service.deliveries.dependencies import DeliveryFiltersDep, EnqueueAfterCommit
from service.deliveries.replay import replay_service
from service.deliveries.schemas import Delivery as DeliverySchema
from service.deliveries.schemas import (
    DeliveryAttempt,
    DeliveryDetail,
    DiscardedHeld,
    ReplayRequest,
    ReplayResult,
    TriggerTestMatch,
    TriggerTestRequest,
    TriggerTestResult,
)
from service.deliveries.service import delivery_service
from service.errors import problem_responses
from service.integrations.dependencies import IntegrationId
from service.kit.pagination import Page, PageParams, page_params

# Tags per route: the trigger dry run belongs with the triggers.
router = APIRouter(prefix="/v1")

DeliveryId = Annotated[uuid.UUID, Path(description="The delivery's id.")]
TriggerId = Annotated[uuid.UUID, Path(description="The trigger's id.")]


@router.get(
    "/integrations/{integration_id}/deliveries",
    response_model=Page[DeliverySchema],
    tags=["deliveries"],
    summary="List deliveries",
    responses=problem_responses(400, 401, 404, 422),
)
async def list_deliveries(
    integration_id: IntegrationId,
    principal: CurrentPrincipal,
    session: SessionDep,
    page: Annotated[PageParams, Depends(page_params)],
    filters: DeliveryFiltersDep,
) -> Page[DeliverySchema]:
    """The integration's delivery log, newest first, optionally filtered."""
    views, next_cursor = await delivery_service.list_for_integration(
        session, principal, integration_id, filters, page
    )
    return Page(
        items=[DeliverySchema.of(view.delivery, view.interaction_external_id) for view in views],
        next_cursor=next_cursor,
    )


@router.get(
    "/deliveries/{delivery_id}",
    response_model=DeliveryDetail,
    tags=["deliveries"],
    summary="Get a delivery",
    responses=problem_responses(401, 404, 422),
)
async def get_delivery(
    delivery_id: DeliveryId, principal: CurrentPrincipal, session: SessionDep
) -> DeliveryDetail:
    """One delivery with its most recent attempts (newest first, at most 100)."""
    log = await delivery_service.get(session, principal, delivery_id)
    return DeliveryDetail.of_attempts(
        log.view.delivery,
        log.view.interaction_external_id,
        [DeliveryAttempt.model_validate(attempt) for attempt in log.attempts],
        log.attempts_recorded,
    )


@router.post(
    "/deliveries/{delivery_id}/retry",
    response_model=DeliverySchema,
    tags=["deliveries"],
    status_code=status.HTTP_202_ACCEPTED,
    summary="Retry a delivery",
    responses={
        202: {
            "description": "Due again: queued (`pending`), or `held` while the integration "
            "is disabled or invalid."
        },
        **problem_responses(401, 403, 404, 409, 422),
    },
)
async def retry_delivery(
    delivery_id: DeliveryId,
    principal: AdminPrincipal,
    session: SessionDep,
    enqueuer: EnqueueAfterCommit,
) -> DeliverySchema:
    """Send a `failed` or `dead` delivery again, with a fresh attempt count (409 otherwise)."""
    view, due = await delivery_service.retry(session, principal, delivery_id)
    enqueuer.enqueue(due)
    return DeliverySchema.of(view.delivery, view.interaction_external_id)


@router.post(
    "/integrations/{integration_id}/deliveries/discard-held",
    response_model=DiscardedHeld,
    tags=["deliveries"],
    summary="Discard held deliveries",
    responses=problem_responses(401, 403, 404, 422),
)
async def discard_held_deliveries(
    integration_id: IntegrationId, principal: RecentAdminPrincipal, session: SessionDep
) -> DiscardedHeld:
    """Never send the integration's held deliveries (needs a sign-in within 10 minutes)."""
    discarded = await delivery_service.discard_held(session, principal, integration_id)
    return DiscardedHeld(discarded=discarded)


@router.post(
    "/integrations/{integration_id}/replay",
    response_model=ReplayResult,
    tags=["deliveries"],
    summary="Replay stored interactions",
    responses=problem_responses(400, 401, 403, 404, 409, 422),
)
async def replay_interactions(
    integration_id: IntegrationId,
    data: ReplayRequest,
    principal: RecentAdminPrincipal,
    session: SessionDep,
    enqueuer: EnqueueAfterCommit,
) -> ReplayResult:
    """Run the current triggers over stored interactions that have no delivery here yet.

    A dry run (the default) only counts; otherwise the matches become deliveries (at most
    10,000 per run). Needs a sign-in within 10 minutes.
    """
    outcome, due = await replay_service.replay(session, principal, integration_id, data)
    enqueuer.enqueue(due)
    return ReplayResult(
        dry_run=outcome.dry_run,
        evaluated=outcome.evaluated,
        matched=outcome.matched,
        created=outcome.created,
        status=outcome.status,
        exceeds_limit=outcome.exceeds_limit,
        sample=outcome.sample,
    )


@router.post(
    "/integrations/{integration_id}/triggers/{trigger_id}/test",
    response_model=TriggerTestResult,
    tags=["triggers"],
    summary="Test a trigger",
    responses=problem_responses(400, 401, 404, 422),
)
async def dry_run_trigger(
    integration_id: IntegrationId,
    trigger_id: TriggerId,
    principal: CurrentPrincipal,
    session: SessionDep,
    data: Annotated[TriggerTestRequest | None, Body()] = None,
) -> TriggerTestResult:
    """Dry-run the trigger (enabled or not) over the most recent stored interactions."""
    limit = (data or TriggerTestRequest()).limit
    outcome = await replay_service.dry_run_trigger(
        session, principal, integration_id, trigger_id, limit=limit
    )
    return TriggerTestResult(
        evaluated=outcome.evaluated,
        matched=outcome.matched,
        matches=[
            TriggerTestMatch(interaction_id=match.interaction_id, started_at=match.started_at)
            for match in outcome.matches
        ],
    )
