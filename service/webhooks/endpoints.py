import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import get_args

from fastapi import APIRouter, FastAPI, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from sqlalchemy import select
from starlette.background import BackgroundTask

from service.audit.service import audit
from service.auth.dependencies import RecentAdminPrincipal
from service.db import SessionDep
from service.delivery.dispatch import Dispatcher
from service.errors import problem_responses
from service.kit.plain_route import PlainRoute
from service.models import DeliveryStatus, WebhookSecret
from service.models.base import utc_now
from service.observability.metrics import DELIVERIES_CREATED, WEBHOOK_EVENTS
from service.organizations.service import generate_webhook_secret
from service.webhooks.results import IntakeStatus
from service.webhooks.schemas import WebhookAnswer, request_body_schema
from service.webhooks.service import IntakeService
from service.webhooks.verification import signature_headers

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["webhooks"])

INTAKE_PATH = "/v1/webhooks/{organization_id}/interactions"

# How long the previous signing secrets keep verifying after a rotation, so the platform can
# switch over without a single rejected delivery.
ROTATION_OVERLAP = timedelta(hours=24)


async def enqueue_after_commit(
    dispatcher: Dispatcher | None, delivery_ids: Sequence[uuid.UUID], request_id: str | None
) -> None:
    if dispatcher is None:
        return
    try:
        await dispatcher.enqueue(delivery_ids, request_id=request_id)
    except Exception:
        # The rows are committed; the sweeper enqueues them if this did not.
        logger.warning("enqueue after commit failed; the sweeper will pick them up", exc_info=True)


async def receive_webhook(request: Request) -> Response:
    """Signed by the Creovai platform (`webhook-id`, `webhook-timestamp`, `webhook-signature`).

    202 once the interaction and its deliveries are stored; 200 for a repeated webhook-id or
    interaction, or an update older than the stored one (nothing is created).
    """
    # The hot path of the service, served as a PlainRoute: FastAPI resolves nothing (intake
    # opens its own transactions; the path's one parameter is parsed here, with the same
    # validation and error), and the answer is rendered here rather than validated against
    # the response model.
    organization_id = _organization_id(request)
    body = await request.body()
    intake: IntakeService = request.app.state.intake
    request_id = getattr(request.state, "request_id", None)
    result = await intake.receive(
        organization_id, body, signature_headers(request.headers), request_id=request_id
    )
    _EVENTS[result.status].inc()
    for delivery_status in result.delivery_statuses:
        _CREATED[delivery_status].inc()
    background: BackgroundTask | None = None
    # Completed interactions are enqueued by the intake writer, with their batch (a shutdown
    # waits for that: IntakeBatcher.aclose); the rest here, once answered.
    if result.pending_ids and not result.enqueued_by_batch:
        background = BackgroundTask(
            enqueue_after_commit,
            getattr(request.app.state, "dispatcher", None),
            result.pending_ids,
            request_id,
        )
    return Response(
        content=_answer(result.status, len(result.delivery_statuses)),
        status_code=202 if result.status == "accepted" else 200,
        media_type="application/json",
        background=background,
    )


def add_intake_route(app: FastAPI) -> None:
    """The intake route, added to the app itself rather than through an included router:
    FastAPI resolves an included router's routes through one more layer on every request,
    and this is the route that takes the load. Added first, it is also matched first."""
    app.router.add_api_route(
        INTAKE_PATH,
        receive_webhook,
        route_class_override=PlainRoute,
        methods=["POST"],
        tags=["webhooks"],
        response_model=WebhookAnswer,
        status_code=status.HTTP_202_ACCEPTED,
        summary="Receive an interaction or catalogue event (Standard Webhooks)",
        openapi_extra={
            "requestBody": request_body_schema(),
            # Declared here, read in the function (see there).
            "parameters": [
                {
                    "name": "organization_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid", "title": "Organization Id"},
                }
            ],
        },
        responses={
            200: {
                "model": WebhookAnswer,
                "description": "A duplicate or stale event: nothing new.",
            },
            **problem_responses(400, 401, 413, 422, 503),
        },
    )


_ORGANIZATION_ID = TypeAdapter(uuid.UUID)


def _organization_id(request: Request) -> uuid.UUID:
    try:
        return _ORGANIZATION_ID.validate_python(request.path_params["organization_id"])
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("path", "organization_id")} for error in exc.errors()]
        ) from None


# The metric children, looked up once rather than per webhook.
_EVENTS = {status: WEBHOOK_EVENTS.labels(status) for status in get_args(IntakeStatus)}
_CREATED = {status: DELIVERIES_CREATED.labels(status.value) for status in DeliveryStatus}


@lru_cache(maxsize=256)
def _answer(status: IntakeStatus, deliveries: int) -> bytes:
    return WebhookAnswer(status=status, deliveries=deliveries).model_dump_json().encode()


class RotatedSecret(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    "previous_secrets_expire_at": "2026-11-27T17:00:00Z",
                }
            ]
        }
    )

    secret: str = Field(description="The new signing secret. Shown only this once.")
    previous_secrets_expire_at: datetime = Field(
        description="Until then the previous secrets still verify, so the sender can switch."
    )


@router.post(
    "/webhook-secrets/rotate",
    response_model=RotatedSecret,
    summary="Rotate the webhook signing secret",
    responses=problem_responses(401, 403),
)
async def rotate_webhook_secret(
    request: Request, principal: RecentAdminPrincipal, session: SessionDep
) -> RotatedSecret:
    """A new signing secret (needs a sign-in within 10 minutes); the old ones keep working for
    24 hours."""
    now = utc_now()
    expires_at = now + ROTATION_OVERLAP
    current = await session.scalars(
        select(WebhookSecret).where(WebhookSecret.organization_id == principal.organization_id)
    )
    for row in current:
        if row.expires_at is None or row.expires_at > expires_at:
            row.expires_at = expires_at
    secret = generate_webhook_secret()
    session.add(
        WebhookSecret(
            organization_id=principal.organization_id,
            secret_encrypted=request.app.state.secret_box.encrypt(secret),
        )
    )
    audit.record(
        session,
        organization_id=principal.organization_id,
        actor=principal,
        action="webhook_secret.rotated",
        details={"previous_secrets_expire_at": expires_at.isoformat()},
    )
    intake: IntakeService = request.app.state.intake
    intake.forget_secrets(principal.organization_id)
    return RotatedSecret(secret=secret, previous_secrets_expire_at=expires_at)
