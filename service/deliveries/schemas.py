"""The delivery log, retry, discard, replay and trigger dry-run bodies."""

import uuid
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from service.interactions.schemas import Moment
from service.models import Delivery as DeliveryRow
from service.models import DeliveryStatus

MAX_REPLAY_WINDOW = timedelta(days=31)
REPLAY_SAMPLE_SIZE = 20
TRIGGER_TEST_MAX_LIMIT = 1000
TRIGGER_TEST_DEFAULT_LIMIT = 200
TRIGGER_TEST_MATCHES_SHOWN = 50

_DELIVERY_EXAMPLE: dict[str, Any] = {
    "id": "3d5c8e2a-1f4b-4c6d-9e8f-0a1b2c3d4e5f",
    "integration_id": "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b",
    "interaction_id": "call-000123",
    "trigger_id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    "trigger_name": "Frustrated callers",
    "status": "delivered",
    "attempts": 2,
    "next_attempt_at": None,
    "delivered_at": "2026-11-26T09:22:14Z",
    "response_id": "R_1mFz3kPq8sVtXyA",
    "last_error": "Qualtrics answered 503 Service Unavailable.",
    "interaction_revision": 1,
    "newer_revision_after_delivery": False,
    "created_at": "2026-11-26T09:21:31Z",
    "updated_at": "2026-11-26T09:22:14Z",
}

_ATTEMPT_EXAMPLE: dict[str, Any] = {
    "id": "5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e",
    "started_at": "2026-11-26T09:22:13Z",
    "duration_ms": 412,
    "outcome": "delivered",
    "status_code": 200,
    "error_class": None,
    "response_body": (
        '{"result":{"responseId":"R_1mFz3kPq8sVtXyA"},"meta":{"httpStatus":"200 - OK"}}'
    ),
    "counted": True,
}


class Delivery(BaseModel):
    """One interaction on its way to (or in) the integration's Qualtrics survey."""

    model_config = ConfigDict(json_schema_extra={"examples": [_DELIVERY_EXAMPLE]})

    id: uuid.UUID = Field(description="The delivery id, also the Qualtrics `Idempotency-Key`.")
    integration_id: uuid.UUID
    interaction_id: str = Field(description="The Creovai interaction id.")
    trigger_id: uuid.UUID | None = Field(
        description="The trigger that matched (first by position); it may since be deleted."
    )
    trigger_name: str = Field(description="The matched trigger's name when it matched.")
    status: DeliveryStatus = Field(
        description="`pending` (queued or waiting to retry), `delivered`, `held` (integration "
        "disabled or invalid; released on enable), `failed` (permanent error), `dead` "
        "(retries exhausted), `discarded` (held, then discarded by an admin)."
    )
    attempts: int = Field(description="Attempts that counted (throttling waits do not).")
    next_attempt_at: datetime | None = Field(
        description="When the next attempt is due; null unless `pending`."
    )
    delivered_at: datetime | None
    response_id: str | None = Field(description="The Qualtrics response id, once delivered.")
    last_error: str | None = Field(description="What went wrong the last time, if anything.")
    interaction_revision: int = Field(
        description="The interaction revision sent (or to send); 1 for the first version."
    )
    newer_revision_after_delivery: bool = Field(
        description="A newer version of the interaction arrived after it was delivered; "
        "delivered responses are not changed."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, delivery: DeliveryRow, interaction_external_id: str) -> "Delivery":
        return cls.model_validate(_fields(delivery, interaction_external_id))


def _fields(delivery: DeliveryRow, interaction_external_id: str) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "integration_id": delivery.integration_id,
        "interaction_id": interaction_external_id,
        "trigger_id": delivery.trigger_id,
        "trigger_name": delivery.trigger_name,
        "status": delivery.status,
        "attempts": delivery.attempts,
        # A stale schedule on a settled delivery would read as a promise.
        "next_attempt_at": (
            delivery.next_attempt_at if delivery.status == DeliveryStatus.PENDING else None
        ),
        "delivered_at": delivery.delivered_at,
        "response_id": delivery.response_id,
        "last_error": delivery.last_error,
        "interaction_revision": delivery.interaction_revision,
        "newer_revision_after_delivery": delivery.newer_revision_after_delivery,
        "created_at": delivery.created_at,
        "updated_at": delivery.updated_at,
    }


class DeliveryAttempt(BaseModel):
    """One try at creating the Qualtrics response."""

    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [_ATTEMPT_EXAMPLE]}
    )

    id: uuid.UUID
    started_at: datetime
    duration_ms: int
    outcome: str = Field(description="What came of it, e.g. `delivered`, `retry`, `failed`.")
    status_code: int | None = Field(description="Qualtrics' HTTP status; null if none came.")
    error_class: str | None = Field(description="The kind of error, e.g. `QualtricsTimeout`.")
    response_body: str | None = Field(
        description="The start of Qualtrics' answer (at most 2048 characters)."
    )
    counted: bool = Field(description="Whether it counted as an attempt (throttling does not).")


class DeliveryDetail(Delivery):
    """A delivery with its attempt log."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {**_DELIVERY_EXAMPLE, "attempt_log": [_ATTEMPT_EXAMPLE], "attempts_recorded": 1}
            ]
        }
    )

    attempt_log: list[DeliveryAttempt] = Field(
        description="The most recent attempts, newest first (at most 100)."
    )
    attempts_recorded: int = Field(
        description="All attempts on record, including those that did not count and those "
        "before a retry; more than `attempt_log` holds when it was cut."
    )

    @classmethod
    def of_attempts(
        cls,
        delivery: DeliveryRow,
        interaction_external_id: str,
        attempts: list[DeliveryAttempt],
        attempts_recorded: int,
    ) -> "DeliveryDetail":
        return cls.model_validate(
            {
                **_fields(delivery, interaction_external_id),
                "attempt_log": attempts,
                "attempts_recorded": attempts_recorded,
            }
        )


class DiscardedHeld(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"discarded": 42}]})

    discarded: int = Field(description="How many held deliveries were discarded.")


class ReplayRequest(BaseModel):
    """A window of interaction start times: `from` inclusive, `to` exclusive."""

    model_config = ConfigDict(
        extra="forbid",
        serialize_by_alias=True,
        json_schema_extra={
            "examples": [
                {"from": "2026-11-01T00:00:00Z", "to": "2026-11-08T00:00:00Z", "dry_run": True}
            ]
        },
    )

    from_: Moment = Field(alias="from", description="Earliest start (inclusive).")
    to: Moment = Field(description="Latest start (exclusive); at most 31 days after `from`.")
    dry_run: bool = Field(
        default=True, description="Only count what would be delivered; create nothing."
    )

    @field_validator("to")
    @classmethod
    def _window(cls, to: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("from_")
        if start is None:  # `from` itself is invalid and reported on its own
            return to
        if to <= start:
            raise PydanticCustomError("window_empty", "Must be after `from`.")
        if to - start > MAX_REPLAY_WINDOW:
            raise PydanticCustomError(
                "window_too_long",
                "The window is at most {days} days; replay a longer period in several runs.",
                {"days": MAX_REPLAY_WINDOW.days},
            )
        return to


class ReplayResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "dry_run": True,
                    "evaluated": 1250,
                    "matched": 37,
                    "created": 0,
                    "status": None,
                    "exceeds_limit": False,
                    "sample": ["call-000123", "chat-000131"],
                }
            ]
        }
    )

    dry_run: bool
    evaluated: int = Field(
        description="Stored interactions in the window that had no delivery for this integration."
    )
    matched: int = Field(description="How many of them an enabled trigger selects.")
    created: int = Field(description="Deliveries created (0 on a dry run).")
    status: DeliveryStatus | None = Field(
        description="The status the created deliveries got: `pending`, or `held` while the "
        "integration is disabled or invalid; null on a dry run."
    )
    exceeds_limit: bool = Field(
        description="More matches than one run may create: a real run would be refused, "
        "narrow the window."
    )
    sample: list[str] = Field(
        description="The Creovai ids of the first 20 matches, earliest start first."
    )


class TriggerTestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"limit": 200}]})

    limit: int = Field(
        default=TRIGGER_TEST_DEFAULT_LIMIT,
        ge=1,
        le=TRIGGER_TEST_MAX_LIMIT,
        description="How many of the most recent stored interactions to evaluate.",
    )


class TriggerTestMatch(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"interaction_id": "call-000123", "started_at": "2026-11-26T08:15:00Z"}]
        }
    )

    interaction_id: str = Field(description="The Creovai interaction id.")
    started_at: datetime


class TriggerTestResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "evaluated": 200,
                    "matched": 12,
                    "matches": [
                        {"interaction_id": "call-000123", "started_at": "2026-11-26T08:15:00Z"}
                    ],
                }
            ]
        }
    )

    evaluated: int = Field(description="Interactions evaluated (at most `limit`).")
    matched: int = Field(description="How many of them the trigger selects.")
    matches: list[TriggerTestMatch] = Field(
        description="The first 50 matches, most recent start first."
    )
