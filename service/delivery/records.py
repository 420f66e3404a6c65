"""Step 3 of a run, the record: the attempt row and the delivery's new state in one short
transaction, fenced on the claim (a success excepted), and the rescheduling of a run that got
no limiter slot. Also `invalidate_and_hold`, which the health checks use too."""

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.delivery.attempt_log import MAX_REASON_CHARS, cap, describe, log_attempt
from service.delivery.claims import Claim
from service.delivery.classify import Result
from service.delivery.context import DeliveryContext, Outcome
from service.integrations.service import integration_service
from service.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Integration,
    IntegrationHealth,
    Interaction,
)
from service.qualtrics.errors import MAX_SNIPPET_CHARS, sanitize

WORKER_ACTOR = "worker"


async def record(
    context: DeliveryContext,
    claim: Claim,
    result: Result,
    started_at: datetime,
    duration_ms: int,
    request_id: str | None,
) -> Outcome:
    """The attempt row and the delivery's new state, in one short transaction."""
    error = result.error
    message = None if error is None else cap(describe(error), MAX_REASON_CHARS)
    body = getattr(error, "body_snippet", "") or None
    async with context.sessionmaker.begin() as session:
        session.add(
            DeliveryAttempt(
                delivery_id=claim.delivery_id,
                started_at=started_at,
                duration_ms=duration_ms,
                outcome=result.outcome.value,
                status_code=result.status_code,
                error_class=None if error is None else type(error).__name__,
                # Limit to the first 2048 characters to avoid bloating the database; the
                # client already redacted secrets, sanitize again in case it did not.
                response_body=None if body is None else cap(sanitize(body), MAX_SNIPPET_CHARS),
                counted=result.counted,
            )
        )
        await session.flush()  # the INSERT first: on SQLite it takes the write lock
        attempts = Delivery.attempts + 1 if result.counted else Delivery.attempts
        if result.outcome is Outcome.DELIVERED:
            applied = await _mark_delivered(session, claim, result, context.clock(), attempts)
        elif result.outcome is Outcome.HELD:
            if result.invalidate is not None:
                # The integration before this delivery's row, as `invalidate_and_hold` locks
                # them: runs that met the same 401 or 404 queue here instead of each holding
                # its own row while waiting for the others' (a deadlock on PostgreSQL).
                await _lock_integration(session, claim.integration_id)
            applied = await _fenced_update(
                session,
                claim,
                status=DeliveryStatus.HELD,
                attempts=attempts,
                next_attempt_at=context.clock(),
                last_error=message,
            )
            if result.invalidate is not None:
                await invalidate_and_hold(session, claim.integration_id, result.invalidate)
        else:
            status = {
                Outcome.FAILED: DeliveryStatus.FAILED,
                Outcome.DEAD: DeliveryStatus.DEAD,
            }.get(result.outcome, DeliveryStatus.PENDING)
            applied = await _fenced_update(
                session,
                claim,
                status=status,
                attempts=attempts,
                next_attempt_at=result.next_attempt_at,
                last_error=message,
            )
    outcome = result.outcome if applied else Outcome.SKIPPED
    attempt = claim.attempts + 1 if result.counted else claim.attempts
    log_attempt(claim, outcome, result, duration_ms, request_id, attempt=attempt)
    return outcome


async def _mark_delivered(
    session: AsyncSession, claim: Claim, result: Result, now: datetime, attempts: Any
) -> bool:
    # Not fenced: the response exists in Qualtrics, whatever happened to the row meanwhile.
    revision = await session.scalar(
        select(Interaction.revision).where(Interaction.id == claim.interaction_id)
    )
    updated = await session.execute(
        update(Delivery)
        .where(Delivery.id == claim.delivery_id, Delivery.status != DeliveryStatus.DELIVERED)
        .values(
            status=DeliveryStatus.DELIVERED,
            delivered_at=now,
            response_id=result.response_id,
            attempts=attempts,
            next_attempt_at=None,
            last_error=None,
            interaction_revision=claim.revision,
            # An `interaction.updated` that arrived after we encoded: the log says so (§7).
            newer_revision_after_delivery=revision is not None and revision > claim.revision,
        )
        .execution_options(synchronize_session=False)
    )
    return cast("CursorResult[Any]", updated).rowcount == 1


async def _fenced_update(session: AsyncSession, claim: Claim, **values: Any) -> bool:
    """UPDATE the delivery only if this run's claim still holds it."""
    updated = await session.execute(
        update(Delivery)
        .where(
            Delivery.id == claim.delivery_id,
            Delivery.status == DeliveryStatus.PENDING,
            Delivery.next_attempt_at == claim.lease_until,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return cast("CursorResult[Any]", updated).rowcount == 1


async def no_slot(
    context: DeliveryContext, claim: Claim, retry_after: float | None, request_id: str | None
) -> Outcome:
    """No limiter slot in time: nothing was sent, so no attempt row and no attempt spent."""
    delay = context.policy.limiter_timeout(retry_after, context.rand)
    next_attempt_at = context.clock() + delay
    async with context.sessionmaker.begin() as session:
        applied = await _fenced_update(session, claim, next_attempt_at=next_attempt_at)
    log_attempt(claim, Outcome.RATE_LIMITED, None, 0, request_id, attempt=claim.attempts)
    return Outcome.RATE_LIMITED if applied else Outcome.SKIPPED


async def invalidate_and_hold(
    session: AsyncSession, integration_id: uuid.UUID, reason: str
) -> None:
    """Mark the integration invalid and disabled (design §6) and hold its pending deliveries.

    For a delivery that met a rejected credential or a deleted survey, and for the health
    checks. Idempotent: an integration that is already invalid and disabled gets no second
    audit entry. Only flushes; the caller's transaction commits.
    """
    if session.get_bind().dialect.name == "postgresql":
        # The integration row first, then its deliveries, like every other writer of both
        # (enabling, a delivery's record step): concurrent invalidations of one integration
        # queue on this lock instead of deadlocking over each other's delivery rows.
        await _lock_integration(session, integration_id)
    # The UPDATE first: on SQLite it takes the write lock, so the read below cannot go stale.
    await session.execute(
        update(Delivery)
        .where(Delivery.integration_id == integration_id, Delivery.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.HELD)
        .execution_options(synchronize_session=False)
    )
    # FOR UPDATE on PostgreSQL, so no admin's change slips in between the read and the write.
    integration = await session.get(
        Integration, integration_id, with_for_update=True, populate_existing=True
    )
    if integration is None:
        return
    if integration.enabled or integration.health != IntegrationHealth.INVALID:
        integration_service.invalidate(session, integration, reason=reason, actor=WORKER_ACTOR)
        await session.flush()


async def _lock_integration(session: AsyncSession, integration_id: uuid.UUID) -> None:
    """SELECT ... FOR UPDATE of the integration row (nothing on SQLite: one writer at a time)."""
    await session.execute(
        select(Integration.id).where(Integration.id == integration_id).with_for_update()
    )
