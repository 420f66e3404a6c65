"""The testable core of a delivery job: one try at creating one Qualtrics response (design §8).

The arq task and the embedded dispatcher call `send_delivery(context, delivery_id)` and
nothing else (style lesson 7). It opens its own short transactions, never holds one across
the HTTP call, and returns an `Outcome`; the delivery row says what happens next.

One run, in three steps:

1. **Claim** (one short transaction): read the delivery, its integration, connection,
   project and interaction; hold or fail it when it cannot be sent (integration disabled or
   invalid → `held`; a part missing, or an interaction or data fields that no longer encode →
   `failed` with the reason); otherwise encode the newest stored revision and claim the row.
2. **Send** (no transaction): wait for a slot of the shared rate limiter keyed by the
   Qualtrics brand (waiting spends no attempt), then `POST .../responses` with
   `Idempotency-Key` = the delivery id. The whole step is bounded by the lease (below).
3. **Record** (one short transaction): the `DeliveryAttempt` row and the delivery's new state
   commit together: `delivered`; a 429 rescheduled without spending an attempt; a retryable
   error rescheduled on the `backoff` schedule, or `dead` once it is exhausted; a rejected
   credential or deleted survey invalidates the integration and holds all its pending
   deliveries; any other refusal `failed` with the reason.

Claim protocol: a lease on `next_attempt_at`
--------------------------------------------
A delivery is *due* when it is `pending` and `next_attempt_at <= now`; the sweeper
re-enqueues due deliveries whose `last_enqueued_at` is older than its interval, and a run
only sends a due delivery. The claim is one conditional UPDATE:

    UPDATE deliveries SET next_attempt_at = :now + :lease, interaction_revision = :revision
    WHERE id = :id AND status = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= :now)

Exactly one concurrent run matches (PostgreSQL re-checks the WHERE on the locked row; SQLite
has one writer at a time). Moving `next_attempt_at` into the future makes the row not due for
the lease, so a redelivered arq job or a sweeper re-enqueue finds it not due and answers
`SKIPPED`, without any extra column. `last_enqueued_at` stays the sweeper's and the
dispatcher's alone. If the worker dies mid-send, the lease runs out, the row is due again and
the sweeper re-enqueues it; the repeated POST carries the same Idempotency-Key, so Qualtrics
creates no duplicate.

The record step is fenced on the claim: it updates the row only if it is still `pending` with
`next_attempt_at` equal to this run's lease. Anything that moved it meanwhile (an admin
discarding it, another delivery's 401 holding the integration, a run that took over an expired
lease) wins, and this run's result is kept in its attempt row only (`SKIPPED`). A success is
the exception: the response exists in Qualtrics, so it is recorded as `delivered` whatever
else happened, unless the row is delivered already.

The lease is `settings.job_timeout` + 15 s (75 s by default), so it outlives any run arq
lets finish. The send step is bounded by `DeliveryContext.send_budget` (the job timeout less
10 s), so a run records its result before arq would cancel it and long before its claim
expires: a slot not granted in time is a rate-limit wait (no attempt spent); a request still
unanswered is a timeout (a counted, retryable attempt). An unexpected exception while sending
counts as a retryable attempt too, so nothing spins forever. Cancellation (arq's job timeout,
a shutdown) and database errors propagate: the claim simply expires (or was never taken) and
the sweeper offers the delivery again, without spending an attempt.

Releasing held deliveries (enable) should set `status = 'pending', next_attempt_at = now`.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.catalog.service import catalog as catalog_service
from service.config import Settings
from service.connections.gateway import QualtricsGateway
from service.data_fields.encoding import EncodingPlan, compile_plan
from service.data_fields.service import saved_fields
from service.delivery.backoff import DEFAULT_POLICY, Random, RetryPolicy, system_random
from service.delivery.encoding_cache import PlanCache, PlanKey, plan_cache
from service.delivery.ratelimit import RateLimiter, RateLimitTimeout
from service.integrations.service import integration_service
from service.interactions.schemas import Interaction as InteractionPayload
from service.kit.crypto import SecretDecryptionError
from service.models import (
    Catalog,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Integration,
    IntegrationHealth,
    Interaction,
    QualtricsConnection,
    QualtricsProject,
)
from service.models.base import utc_now
from service.qualtrics import (
    QualtricsAuthRejected,
    QualtricsError,
    QualtricsNotFound,
    QualtricsRateLimited,
    QualtricsTimeout,
)
from service.qualtrics.errors import MAX_SNIPPET_CHARS, sanitize

logger = logging.getLogger(__name__)

WORKER_ACTOR = "worker"
LEASE_EXTRA = timedelta(seconds=15)
BUDGET_MARGIN = timedelta(seconds=10)
MAX_REASON_CHARS = 1000


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY_SCHEDULED = "retry_scheduled"  # a retryable error; attempts += 1
    RATE_LIMITED = "rate_limited"  # a 429 or no limiter slot in time; no attempt spent
    HELD = "held"  # integration disabled or invalid (or invalidated by this attempt)
    FAILED = "failed"  # a permanent error; the reason is in `last_error`
    DEAD = "dead"  # retries exhausted
    SKIPPED = "skipped"  # nothing to do: not pending, not due, or another run has it


@dataclass(frozen=True)
class DeliveryContext:
    """What a run needs; the worker builds one at startup. Fields after `clock` are for tests."""

    sessionmaker: async_sessionmaker[AsyncSession]
    gateway: QualtricsGateway
    limiter: RateLimiter
    settings: Settings
    clock: Callable[[], datetime] = utc_now
    policy: RetryPolicy = DEFAULT_POLICY
    lease: timedelta | None = None  # default: the job timeout + LEASE_EXTRA
    rand: Random = system_random
    plans: PlanCache = plan_cache

    @property
    def lease_duration(self) -> timedelta:
        """How long a claim keeps the delivery from other runs: longer than any job runs."""
        if self.lease is not None:
            return self.lease
        return self.settings.job_timeout + LEASE_EXTRA

    @property
    def send_budget(self) -> timedelta:
        """How long the send step may take: inside both the job timeout and the lease, with
        room left to record the result (50 s for the default 60 s job timeout, above the
        client's own 45 s deadline, so that one normally fires first)."""
        limit = min(self.settings.job_timeout, self.lease_duration)
        return limit - min(BUDGET_MARGIN, limit / 4)


@dataclass(frozen=True, slots=True)
class _Claim:
    delivery_id: uuid.UUID
    integration_id: uuid.UUID
    interaction_id: uuid.UUID
    lease_until: datetime
    attempts: int  # counted attempts before this one
    revision: int
    survey_id: str
    brand_key: str
    connection: QualtricsConnection
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Result:
    """What one send came to, and what to write."""

    outcome: Outcome
    counted: bool
    next_attempt_at: datetime | None = None
    status_code: int | None = None
    error: Exception | None = None
    response_id: str | None = None
    invalidate: str | None = None  # the integration's new health reason
    penalty: timedelta | None = None  # the limiter's cool-down after a 429


async def send_delivery(
    context: DeliveryContext, delivery_id: uuid.UUID, *, request_id: str | None = None
) -> Outcome:
    """Try the delivery once if it is pending and due; see the module docstring."""
    claim = await _claim(context, delivery_id, request_id)
    if isinstance(claim, Outcome):
        return claim
    started_at, started = context.clock(), time.monotonic()
    waiting = True
    response_id: str | None = None
    try:
        client = context.gateway.client_for(claim.connection)
        async with asyncio.timeout(context.send_budget.total_seconds()):
            async with context.limiter.slot(claim.brand_key):
                waiting = False
                started_at, started = context.clock(), time.monotonic()
                response_id = await client.create_response(
                    claim.survey_id, claim.values, idempotency_key=str(claim.delivery_id)
                )
        result = _delivered(response_id)
    except RateLimitTimeout as exc:
        return await _no_slot(context, claim, exc.retry_after, request_id)
    except TimeoutError:
        if waiting:
            return await _no_slot(context, claim, None, request_id)
        if response_id is not None:  # the budget ran out while the slot was given back
            result = _delivered(response_id)
        else:
            budget = context.send_budget.total_seconds()
            timeout = QualtricsTimeout(
                f"Qualtrics did not answer POST within the delivery's {budget:g} s budget",
                method="POST",
                path=f"/API/v3/surveys/{claim.survey_id}/responses",
            )
            result = _classify(context, claim, timeout)
    except (QualtricsError, SecretDecryptionError, ValueError) as exc:
        result = _classify(context, claim, exc)
    except Exception as exc:
        # A bug, or something nobody foresaw: count it like a transient error, so the delivery
        # ends `dead` after the schedule instead of being re-claimed forever. (Cancellation is
        # not caught: the claim then expires and the sweeper offers the delivery again.)
        logger.error(
            "unexpected %s sending delivery %s",
            type(exc).__name__,
            claim.delivery_id,
            exc_info=True,
        )
        result = _classify(context, claim, exc)
    duration_ms = int((time.monotonic() - started) * 1000)
    if result.penalty is not None:
        await _penalize(context, claim.brand_key, result.penalty)
    return await _record(context, claim, result, started_at, duration_ms, request_id)


# -- step 1: claim ---------------------------------------------------------------------------


async def _claim(
    context: DeliveryContext, delivery_id: uuid.UUID, request_id: str | None
) -> _Claim | Outcome:
    now = context.clock()
    async with context.sessionmaker.begin() as session:
        delivery = await session.get(Delivery, delivery_id)
        if delivery is None or delivery.status != DeliveryStatus.PENDING:
            why = "not found" if delivery is None else delivery.status.value
            return _skip(delivery_id, why, request_id)
        if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
            return _skip(delivery_id, "not due", request_id)
        integration = await session.get(Integration, delivery.integration_id)
        if integration is None:
            reason = "The integration no longer exists."
            return await _settle(session, delivery, now, Outcome.FAILED, reason, request_id)
        if not integration.enabled or integration.health == IntegrationHealth.INVALID:
            return await _settle(session, delivery, now, Outcome.HELD, None, request_id)
        connection = await session.get(QualtricsConnection, integration.id)
        project = await session.get(QualtricsProject, integration.id)
        interaction = await session.get(Interaction, delivery.interaction_id)
        for part, what in (
            (connection, "Qualtrics credentials (step 1)"),
            (project, "Qualtrics project (step 2)"),
            (interaction, "stored interaction"),
        ):
            if part is None:
                reason = f"The integration has no {what} any more."
                return await _settle(session, delivery, now, Outcome.FAILED, reason, request_id)
        if connection is None or project is None or interaction is None:  # for the type checker
            raise AssertionError("unreachable")

        try:
            plan = await _plan(session, context.plans, integration, project)
        except _Uncompilable as exc:
            return await _settle(session, delivery, now, Outcome.FAILED, str(exc), request_id)
        try:
            values = plan.values(
                InteractionPayload.model_validate(interaction.payload),
                trigger_name=delivery.trigger_name,
                creovai_app_url=context.settings.creovai_app_url,
            )
        except ValidationError as exc:
            reason = f"The stored interaction no longer validates: {_problems(exc)}"
            return await _settle(session, delivery, now, Outcome.FAILED, reason, request_id)
        except Exception as exc:  # a poison interaction must fail, never crash-loop the job
            reason = f"The interaction could not be encoded: {_describe(exc)}"
            return await _settle(session, delivery, now, Outcome.FAILED, reason, request_id)

        lease_until = now + context.lease_duration
        claimed = await _gated_update(
            session,
            delivery.id,
            now,
            next_attempt_at=lease_until,
            interaction_revision=interaction.revision,
        )
        if not claimed:
            return _skip(delivery_id, "claimed by another run", request_id)
        return _Claim(
            delivery_id=delivery.id,
            integration_id=integration.id,
            interaction_id=interaction.id,
            lease_until=lease_until,
            attempts=delivery.attempts,
            revision=interaction.revision,
            survey_id=project.survey_id,
            brand_key=connection.brand_id or connection.subdomain,
            connection=connection,
            values=values,
        )


class _Uncompilable(Exception):
    """The integration's selection cannot be compiled; the message is the delivery's reason."""


async def _plan(
    session: AsyncSession, plans: PlanCache, integration: Integration, project: QualtricsProject
) -> EncodingPlan:
    """The integration's compiled plan: cached, so the hot path reads one small column."""
    catalog_version = await session.scalar(
        select(Catalog.version).where(Catalog.organization_id == integration.organization_id)
    )
    key = PlanKey(integration.id, integration.version, catalog_version or 0, project.updated_at)
    plan = plans.get(key)
    if plan is None:
        snapshot = await catalog_service.get(session, integration.organization_id)
        try:
            plan = compile_plan(saved_fields(integration), project.field_map, snapshot.document)
        except ValidationError as exc:
            raise _Uncompilable(
                f"The integration's data fields no longer validate: {_problems(exc)}"
            ) from exc
        except Exception as exc:  # a broken configuration must fail, never crash-loop the job
            raise _Uncompilable(
                f"The integration's data fields could not be compiled: {_describe(exc)}"
            ) from exc
        # Keyed by the version the document was read at, which may be newer than the one above.
        plans.put(
            PlanKey(
                key.integration_id,
                key.integration_version,
                snapshot.version,
                key.project_updated_at,
            ),
            plan,
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
    delivery: Delivery,
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
        changes["last_error"] = _cap(reason, MAX_REASON_CHARS)
    if not await _gated_update(session, delivery.id, now, **changes):
        return _skip(delivery.id, "claimed by another run", request_id)
    logger.log(
        logging.WARNING if outcome is Outcome.FAILED else logging.INFO,
        "delivery %s %s before sending (integration %s, request_id=%s)",
        delivery.id,
        outcome.value,
        delivery.integration_id,
        request_id,
        extra={
            "delivery_id": str(delivery.id),
            "integration_id": str(delivery.integration_id),
            "outcome": outcome.value,
            "request_id": request_id,
        },
    )
    return outcome


def _skip(delivery_id: uuid.UUID, why: str, request_id: str | None) -> Outcome:
    logger.debug("delivery %s skipped: %s (request_id=%s)", delivery_id, why, request_id)
    return Outcome.SKIPPED


# -- step 2: classify ------------------------------------------------------------------------


def _delivered(response_id: str) -> _Result:
    # create-response answers 200 with the envelope; anything else raised.
    return _Result(Outcome.DELIVERED, counted=True, status_code=200, response_id=response_id)


def _classify(context: DeliveryContext, claim: _Claim, exc: Exception) -> _Result:
    """What an error means for this delivery (design §8, `service/qualtrics/errors.py`)."""
    now, policy = context.clock(), context.policy
    status = exc.status if isinstance(exc, QualtricsError) else None
    if isinstance(exc, QualtricsRateLimited):
        return _Result(
            Outcome.RATE_LIMITED,
            counted=False,
            next_attempt_at=now + policy.rate_limit_delay(exc.retry_after, context.rand),
            status_code=status,
            error=exc,
            penalty=policy.rate_limit_wait(exc.retry_after),
        )
    attempts = claim.attempts + 1
    # Not a QualtricsError: refused before anything was sent (a stored secret no configured
    # key decrypts, a stored id or subdomain this code no longer accepts), which an operator
    # can fix, or an unexpected error. Retried on the schedule rather than failed at once.
    retryable = exc.retryable if isinstance(exc, QualtricsError) else True
    if retryable:
        if policy.exhausted(attempts):
            return _Result(Outcome.DEAD, counted=True, status_code=status, error=exc)
        delay = policy.retry_delay(attempts, context.rand)
        return _Result(
            Outcome.RETRY_SCHEDULED,
            counted=True,
            next_attempt_at=now + delay,
            status_code=status,
            error=exc,
        )
    if isinstance(exc, QualtricsAuthRejected):
        reason = (
            "Qualtrics rejected the credentials, even after a token refresh: save working "
            "credentials (step 1), then enable the integration again."
        )
        return _Result(Outcome.HELD, True, status_code=status, error=exc, invalidate=reason)
    if isinstance(exc, QualtricsNotFound):
        reason = (
            f"The survey {claim.survey_id} was deleted in Qualtrics (or these credentials "
            "cannot reach it): create a new project (step 2), then enable the integration again."
        )
        return _Result(Outcome.HELD, True, status_code=status, error=exc, invalidate=reason)
    # A redirect, an untrustworthy answer, 403 or any other 4xx: repeating will not help.
    return _Result(Outcome.FAILED, counted=True, status_code=status, error=exc)


async def _penalize(context: DeliveryContext, key: str, wait: timedelta) -> None:
    try:
        await context.limiter.penalize(key, wait.total_seconds())
    except Exception:  # the delivery is rescheduled anyway; the limiter must not lose it
        logger.warning("could not apply the rate-limit cool-down for %s", key, exc_info=True)


async def _no_slot(
    context: DeliveryContext, claim: _Claim, retry_after: float | None, request_id: str | None
) -> Outcome:
    """No limiter slot in time: nothing was sent, so no attempt row and no attempt spent."""
    delay = context.policy.limiter_timeout(retry_after, context.rand)
    next_attempt_at = context.clock() + delay
    async with context.sessionmaker.begin() as session:
        applied = await _fenced_update(session, claim, next_attempt_at=next_attempt_at)
    _log_attempt(claim, Outcome.RATE_LIMITED, None, 0, request_id, attempt=claim.attempts)
    return Outcome.RATE_LIMITED if applied else Outcome.SKIPPED


# -- step 3: record --------------------------------------------------------------------------


async def _record(
    context: DeliveryContext,
    claim: _Claim,
    result: _Result,
    started_at: datetime,
    duration_ms: int,
    request_id: str | None,
) -> Outcome:
    """The attempt row and the delivery's new state, in one short transaction."""
    error = result.error
    message = None if error is None else _cap(_describe(error), MAX_REASON_CHARS)
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
                response_body=None if body is None else _cap(sanitize(body), MAX_SNIPPET_CHARS),
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
    _log_attempt(claim, outcome, result, duration_ms, request_id, attempt=attempt)
    return outcome


async def _mark_delivered(
    session: AsyncSession, claim: _Claim, result: _Result, now: datetime, attempts: Any
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


async def _fenced_update(session: AsyncSession, claim: _Claim, **values: Any) -> bool:
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


# -- helpers ---------------------------------------------------------------------------------


def _log_attempt(
    claim: _Claim,
    outcome: Outcome,
    result: _Result | None,
    duration_ms: int,
    request_id: str | None,
    *,
    attempt: int,
) -> None:
    """One structured line per attempt: ids, outcome, status; never values or secrets."""
    error = None if result is None else result.error
    status = None if result is None else result.status_code
    counted = result is not None and result.counted
    error_class = None if error is None else type(error).__name__
    qualtrics_request_id = getattr(error, "request_id", None)
    warn = outcome in (Outcome.FAILED, Outcome.DEAD, Outcome.HELD)
    level = logging.WARNING if warn else logging.INFO
    logger.log(
        level,
        "delivery attempt: delivery_id=%s integration_id=%s outcome=%s status=%s attempt=%s "
        "counted=%s error=%s qualtrics_request_id=%s duration_ms=%d request_id=%s",
        claim.delivery_id,
        claim.integration_id,
        outcome.value,
        status,
        attempt,
        counted,
        error_class,
        qualtrics_request_id,
        duration_ms,
        request_id,
        extra={
            "delivery_id": str(claim.delivery_id),
            "integration_id": str(claim.integration_id),
            "outcome": outcome.value,
            "status_code": status,
            "attempt": attempt,
            "counted": counted,
            "error_class": error_class,
            "qualtrics_request_id": qualtrics_request_id,
            "duration_ms": duration_ms,
            "request_id": request_id,
        },
    )


def _describe(exc: Exception) -> str:
    # QualtricsError messages carry the method, path, status and Qualtrics' error text only.
    text = exc.message if isinstance(exc, QualtricsError) else str(exc)
    return sanitize(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def _problems(exc: ValidationError) -> str:
    """A validation error without the offending input (it may be personal data)."""
    shown = [
        f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)[:5]
    ]
    more = exc.error_count() - len(shown)
    return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
