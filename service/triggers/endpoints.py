import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Response, status

from service.auth.dependencies import AdminPrincipal, CurrentPrincipal
from service.db import SessionDep
from service.errors import problem_responses
from service.kit.etag import etag_for
from service.models import Trigger
from service.triggers.schemas import Trigger as TriggerSchema
from service.triggers.schemas import TriggerCreate, TriggerList, TriggerUpdate
from service.triggers.service import ETAG_KIND, trigger_service

router = APIRouter(prefix="/v1/integrations/{integration_id}/triggers", tags=["triggers"])

IfMatch = Annotated[
    str | None,
    Header(
        max_length=200,
        description="The trigger's ETag you last read; the write fails with 412 if it is stale.",
    ),
]

_ETAG = {
    "ETag": {
        "description": 'The trigger version, e.g. `"trigger-3"`; send it as `If-Match`.',
        "schema": {"type": "string"},
    }
}
_WITH_ETAG: dict[int | str, dict[str, Any]] = {
    200: {"description": "The trigger; the `ETag` header names its version.", "headers": _ETAG}
}


def _with_etag(response: Response, trigger: Trigger) -> TriggerSchema:
    response.headers["ETag"] = etag_for(ETAG_KIND, trigger.version)
    return TriggerSchema.model_validate(trigger)


@router.get(
    "",
    response_model=TriggerList,
    summary="List triggers",
    responses=problem_responses(401, 404, 422),
)
async def list_triggers(
    integration_id: uuid.UUID, principal: CurrentPrincipal, session: SessionDep
) -> TriggerList:
    """All of the integration's triggers (at most 200), in evaluation order."""
    triggers = await trigger_service.list_for_principal(session, principal, integration_id)
    return TriggerList(items=[TriggerSchema.model_validate(trigger) for trigger in triggers])


@router.post(
    "",
    response_model=TriggerSchema,
    status_code=status.HTTP_201_CREATED,
    summary="Create a trigger",
    responses={
        201: {
            "description": "Created, last in the evaluation order.",
            "headers": {
                **_ETAG,
                "Location": {"description": "The new trigger.", "schema": {"type": "string"}},
            },
        },
        **problem_responses(400, 401, 403, 404, 409, 422),
    },
)
async def create_trigger(
    integration_id: uuid.UUID,
    data: TriggerCreate,
    principal: AdminPrincipal,
    session: SessionDep,
    response: Response,
) -> TriggerSchema:
    """Add a trigger after the existing ones; its criteria are checked against the catalogue."""
    trigger = await trigger_service.create(session, principal, integration_id, data)
    response.headers["Location"] = f"/v1/integrations/{integration_id}/triggers/{trigger.id}"
    return _with_etag(response, trigger)


@router.get(
    "/{trigger_id}",
    response_model=TriggerSchema,
    summary="Get a trigger",
    responses={**_WITH_ETAG, **problem_responses(401, 404, 422)},
)
async def get_trigger(
    integration_id: uuid.UUID,
    trigger_id: uuid.UUID,
    principal: CurrentPrincipal,
    session: SessionDep,
    response: Response,
) -> TriggerSchema:
    """One trigger, with its ETag for conditional writes."""
    trigger = await trigger_service.get(session, principal, integration_id, trigger_id)
    return _with_etag(response, trigger)


@router.patch(
    "/{trigger_id}",
    response_model=TriggerSchema,
    summary="Change a trigger",
    responses={**_WITH_ETAG, **problem_responses(400, 401, 403, 404, 409, 412, 422)},
)
async def update_trigger(
    integration_id: uuid.UUID,
    trigger_id: uuid.UUID,
    data: TriggerUpdate,
    principal: AdminPrincipal,
    session: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> TriggerSchema:
    """Rename, replace the criteria, enable or disable, or move it to another position."""
    trigger = await trigger_service.update(
        session, principal, integration_id, trigger_id, data, if_match=if_match
    )
    return _with_etag(response, trigger)


@router.delete(
    "/{trigger_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a trigger",
    responses=problem_responses(401, 403, 404, 412, 422),
)
async def delete_trigger(
    integration_id: uuid.UUID,
    trigger_id: uuid.UUID,
    principal: AdminPrincipal,
    session: SessionDep,
    if_match: IfMatch = None,
) -> None:
    """Delete the trigger; the ones after it move up."""
    await trigger_service.delete(session, principal, integration_id, trigger_id, if_match=if_match)


@router.post(
    "/{trigger_id}/enable",
    response_model=TriggerSchema,
    summary="Enable a trigger",
    responses={**_WITH_ETAG, **problem_responses(401, 403, 404, 412, 422)},
)
async def enable_trigger(
    integration_id: uuid.UUID,
    trigger_id: uuid.UUID,
    principal: AdminPrincipal,
    session: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> TriggerSchema:
    """Let the trigger select interactions again (no change if it is enabled)."""
    trigger = await trigger_service.set_enabled(
        session, principal, integration_id, trigger_id, enabled=True, if_match=if_match
    )
    return _with_etag(response, trigger)


@router.post(
    "/{trigger_id}/disable",
    response_model=TriggerSchema,
    summary="Disable a trigger",
    responses={**_WITH_ETAG, **problem_responses(401, 403, 404, 412, 422)},
)
async def disable_trigger(
    integration_id: uuid.UUID,
    trigger_id: uuid.UUID,
    principal: AdminPrincipal,
    session: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> TriggerSchema:
    """Stop the trigger from selecting interactions (no change if it is disabled)."""
    trigger = await trigger_service.set_enabled(
        session, principal, integration_id, trigger_id, enabled=False, if_match=if_match
    )
    return _with_etag(response, trigger)
