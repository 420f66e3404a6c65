"""Step 1 of a run, the claim: read a due delivery and what sending it needs, hold or fail it
when it cannot be sent, otherwise encode it and lease the row (see "Claim protocol" in
`service.delivery.sender`). Also the claim's types, which the later steps and the batches
share, and the integration's compiled encoding plan (cached) that the claim encodes with."""

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.catalog.service import catalog as catalog_service
from service.data_fields.encoding import EncodingPlan, compile_plan
from service.data_fields.service import saved_fields
from service.delivery.attempt_log import (
    MAX_REASON_CHARS,
    cap,
    describe,
    log_settled,
    problems,
    skip,
)
from service.delivery.context import DeliveryContext, Outcome
from service.delivery.encoding_cache import PlanCache, PlanKey
from service.interactions.schemas import Interaction as InteractionPayload
from service.models import (
    Catalog,
    Delivery,
    DeliveryStatus,
    Integration,
    IntegrationHealth,
    Interaction,
    QualtricsConnection,
    QualtricsProject,
)


@dataclass(frozen=True, slots=True)
class Due:
    """A pending, due delivery, as a claim reads it."""

    id: uuid.UUID
    integration_id: uuid.UUID
    interaction_id: uuid.UUID
    attempts: int
    trigger_name: str


@dataclass(frozen=True, slots=True)
class Connection:
    """The stored credentials a send needs; the secret stays encrypted until a client is made."""

    integration_id: uuid.UUID
    client_id: str
    client_secret_encrypted: str = field(repr=False)
    subdomain: str
    brand_id: str | None

    @classmethod
    def of(cls, connection: QualtricsConnection) -> "Connection":
        return cls(
            connection.integration_id,
            connection.client_id,
            connection.client_secret_encrypted,
            connection.subdomain,
            connection.brand_id,
        )

    @property
    def brand_key(self) -> str:
        """The rate limiter's key: the brand (shared by its integrations), else the host."""
        return self.brand_id or self.subdomain


@dataclass(frozen=True, slots=True)
class Parts:
    """What a delivery needs of its integration (None: that part is missing)."""

    integration_id: uuid.UUID
    enabled: bool
    health: IntegrationHealth
    version: int
    connection: Connection | None
    survey_id: str | None
    project_updated_at: datetime | None
    catalog_version: int | None


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery this run leased, with what its send and its record need."""

    delivery_id: uuid.UUID
    integration_id: uuid.UUID
    interaction_id: uuid.UUID
    lease_until: datetime
    attempts: int  # counted attempts before this one
    revision: int
    survey_id: str
    brand_key: str
    connection: Connection
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Sendable:
    """A delivery that passed every check, with its encoded values; claimed next."""

    due: Due
    connection: Connection
    survey_id: str
    revision: int
    values: dict[str, Any]

    def claim(self, lease_until: datetime) -> Claim:
        return Claim(
            delivery_id=self.due.id,
            integration_id=self.due.integration_id,
            interaction_id=self.due.interaction_id,
            lease_until=lease_until,
            attempts=self.due.attempts,
            revision=self.revision,
            survey_id=self.survey_id,
            brand_key=self.connection.brand_key,
            connection=self.connection,
            values=self.values,
        )


async def claim_any(
    context: DeliveryContext, delivery_id: uuid.UUID, request_id: str | None
) -> Claim | Outcome:
    """The claim step, in a shared transaction when the context batches (else, or when the
    batch could not decide this delivery, in one of its own)."""
    if context.batches is not None:
        decided = await context.batches.claim(context, delivery_id, request_id)
        if decided is not None:
            return decided
    return await _claim(context, delivery_id, request_id)


async def _claim(
    context: DeliveryContext, delivery_id: uuid.UUID, request_id: str | None
) -> Claim | Outcome:
    now = context.clock()
    async with context.sessionmaker.begin() as session:
        delivery = await session.get(Delivery, delivery_id)
        if delivery is None or delivery.status != DeliveryStatus.PENDING:
            why = "not found" if delivery is None else delivery.status.value
            return skip(delivery_id, why, request_id)
        if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
            return skip(delivery_id, "not due", request_id)
        due = Due(
            delivery.id,
            delivery.integration_id,
            delivery.interaction_id,
            delivery.attempts,
            delivery.trigger_name,
        )
        integration = await session.get(Integration, delivery.integration_id)
        parts: Parts | None = None
        if integration is not None:
            connection = await session.get(QualtricsConnection, integration.id)
            project = await session.get(QualtricsProject, integration.id)
            catalog_version = await session.scalar(
                select(Catalog.version).where(
                    Catalog.organization_id == integration.organization_id
                )
            )
            parts = Parts(
                integration_id=integration.id,
                enabled=integration.enabled,
                health=integration.health,
                version=integration.version,
                connection=None if connection is None else Connection.of(connection),
                survey_id=None if project is None else project.survey_id,
                project_updated_at=None if project is None else project.updated_at,
                catalog_version=catalog_version,
            )
        interaction = await session.get(Interaction, delivery.interaction_id)
        stored = None if interaction is None else (interaction.payload, interaction.revision)

        async def settle(due: Due, outcome: Outcome, reason: str | None) -> Outcome:
            return await _settle(session, due, now, outcome, reason, request_id)

        decided = await decide(context, due, parts, stored, settle, session)
        if isinstance(decided, Outcome):
            return decided
        claim = decided.claim(now + context.lease_duration)
        claimed = await _gated_update(
            session,
            delivery.id,
            now,
            next_attempt_at=claim.lease_until,
            interaction_revision=claim.revision,
        )
        if not claimed:
            return skip(delivery_id, "claimed by another run", request_id)
        return claim


# Holds or fails a due delivery that cannot be sent; answers the outcome (SKIPPED if the row
# moved meanwhile).
Settle = Callable[[Due, Outcome, str | None], Awaitable[Outcome]]


async def decide(
    context: DeliveryContext,
    due: Due,
    parts: Parts | None,
    interaction: tuple[str | dict[str, Any], int] | None,
    settle: Settle,
    session: AsyncSession | None,
) -> Sendable | Outcome:
    """Whether a due delivery can be sent; if not, it is held or failed (`settle`).

    `session` is the claim's, for compiling the integration's plan when it is not cached;
    None: a session of its own is opened for that.
    """
    if parts is None:
        return await settle(due, Outcome.FAILED, "The integration no longer exists.")
    if not parts.enabled or parts.health == IntegrationHealth.INVALID:
        return await settle(due, Outcome.HELD, None)
    for part, what in (
        (parts.connection, "Qualtrics credentials (step 1)"),
        (parts.survey_id, "Qualtrics project (step 2)"),
        (interaction, "stored interaction"),
    ):
        if part is None:
            return await settle(due, Outcome.FAILED, f"The integration has no {what} any more.")
    if parts.connection is None or parts.survey_id is None or interaction is None:
        raise AssertionError("unreachable")  # for the type checker
    payload, revision = interaction
    try:
        plan = await _plan(context, parts, session)
    except _Uncompilable as exc:
        return await settle(due, Outcome.FAILED, str(exc))
    try:
        values = plan.values(
            InteractionPayload.model_validate_json(payload)
            if isinstance(payload, str)
            else InteractionPayload.model_validate(payload),
            trigger_name=due.trigger_name,
            creovai_app_url=context.settings.creovai_app_url,
        )
    except ValidationError as exc:
        reason = f"The stored interaction no longer validates: {problems(exc)}"
        return await settle(due, Outcome.FAILED, reason)
    except Exception as exc:  # a poison interaction must fail, never crash-loop the job
        reason = f"The interaction could not be encoded: {describe(exc)}"
        return await settle(due, Outcome.FAILED, reason)
    return Sendable(due, parts.connection, parts.survey_id, revision, values)


class _Uncompilable(Exception):
    """The integration's selection cannot be compiled; the message is the delivery's reason."""


async def _plan(
    context: DeliveryContext, parts: Parts, session: AsyncSession | None
) -> EncodingPlan:
    """The integration's compiled plan: cached, so the hot path reads a few small columns (the
    versions of the integration, the catalogue and the project) and compiles nothing."""
    if parts.project_updated_at is None:
        raise AssertionError("a project is needed to encode")  # decide checked it
    key = PlanKey(
        parts.integration_id,
        parts.version,
        parts.catalog_version or 0,
        parts.project_updated_at,
    )
    plan = context.plans.get(key)
    if plan is not None:
        return plan
    if session is not None:
        return await _compile(context.plans, session, key)
    async with context.sessionmaker() as own:
        return await _compile(context.plans, own, key)


async def _compile(plans: PlanCache, session: AsyncSession, key: PlanKey) -> EncodingPlan:
    integration = await session.get(Integration, key.integration_id)
    project = await session.get(QualtricsProject, key.integration_id)
    if integration is None or project is None:
        raise _Uncompilable("The integration or its project was deleted while delivering.")
    snapshot = await catalog_service.get(session, integration.organization_id)
    try:
        plan = compile_plan(saved_fields(integration), project.field_map, snapshot.document)
    except ValidationError as exc:
        raise _Uncompilable(
            f"The integration's data fields no longer validate: {problems(exc)}"
        ) from exc
    except Exception as exc:  # a broken configuration must fail, never crash-loop the job
        raise _Uncompilable(
            f"The integration's data fields could not be compiled: {describe(exc)}"
        ) from exc
    # Keyed by what was read here, which may be newer than the claim's versions.
    plans.put(
        PlanKey(integration.id, integration.version, snapshot.version, project.updated_at), plan
    )
    return plan


async def _gated_update(
    session: AsyncSession, delivery_id: uuid.UUID, now: datetime, **values: Any
) -> bool:
    """UPDATE the delivery if it is still pending and due at `now` (the claim's condition)."""
    result = await session.execute(
        update(Delivery)
        .where(
            Delivery.id == delivery_id,
            Delivery.status == DeliveryStatus.PENDING,
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return cast("CursorResult[Any]", result).rowcount == 1


async def _settle(
    session: AsyncSession,
    delivery: Delivery | Due,
    now: datetime,
    outcome: Outcome,
    reason: str | None,
    request_id: str | None,
) -> Outcome:
    """Hold or fail a delivery that cannot be sent (no attempt is made, none is counted)."""
    status = DeliveryStatus.HELD if outcome is Outcome.HELD else DeliveryStatus.FAILED
    changes: dict[str, Any] = {"status": status, "next_attempt_at": None}
    if outcome is Outcome.HELD:
        changes["next_attempt_at"] = now  # due as soon as enabling releases it
    if reason is not None:
        changes["last_error"] = cap(reason, MAX_REASON_CHARS)
    if not await _gated_update(session, delivery.id, now, **changes):
        return skip(delivery.id, "claimed by another run", request_id)
    log_settled(delivery, outcome, request_id)
    return outcome
