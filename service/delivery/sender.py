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

Batching (the worker, PostgreSQL)
---------------------------------
A worker runs 50 jobs at once, and a claim or record transaction of its own costs each run
far more CPU than the statements in it (pool checkout and its ping, BEGIN, the ORM, COMMIT:
measured 1.3 ms for a claim, 0.8 ms for a record). With `DeliveryContext.batches` set, the
claim step and the record of a success go to `DeliveryBatches`, which runs whatever steps
are waiting as one statement on a connection it keeps (autocommit: the statement is the
transaction), one batch at a time per kind; steps that arrive meanwhile form the next batch
(under load a small batch waits up to `BATCH_LINGER`, 5 ms, to grow; a lone run after a quiet
spell is not delayed). The protocol is the one above:

- the claim statement locks the due rows among the ids (`FOR UPDATE SKIP LOCKED`), leases
  them and returns them with their interactions and integrations; each is then decided as in
  the run's own claim, and one that cannot be sent is held or failed by an UPDATE fenced on
  that lease. It sets `interaction_revision` to the revision read (the one encoded);
- the record statement inserts the attempt rows and marks each delivery `delivered` unless
  it already is (a success is not fenced, as above), and says which rows it changed.

A batch never decides what it cannot: a row locked by another transaction (skipped), a
delivery asked for twice, a batch whose statement failed or took longer than
`BATCH_TIMEOUT` (its connection is discarded): each such run does the step in its own
transaction, exactly as without batching. Any other outcome than a success is recorded by
the run itself. A run cancelled while its step is in a batch stops waiting; the batch still
commits it (a claim then expires like any other; a success is recorded).
"""

import asyncio
import contextlib
import functools
import logging
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Generic, TypeVar, cast

from pydantic import ValidationError
from sqlalchemy import (
    Boolean,
    CursorResult,
    DateTime,
    Integer,
    String,
    Uuid,
    any_,
    bindparam,
    column,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

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
    QualtricsClient,
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
    # Claims and successful records of concurrent runs share transactions (PostgreSQL only);
    # None: each run opens its own (see "Batching" in the module docstring).
    batches: "DeliveryBatches | None" = None

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
    connection: "_Connection"
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
    claim = await _claim_any(context, delivery_id, request_id)
    if isinstance(claim, Outcome):
        return claim
    started_at, started = context.clock(), time.monotonic()
    waiting = True
    response_id: str | None = None
    try:
        client = _client_for(context.gateway, claim.connection)
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
    if result.outcome is Outcome.DELIVERED and context.batches is not None:
        done = _Done(claim, result, started_at, duration_ms)
        applied = await context.batches.record_delivered(context, done)
        if applied is not None:
            outcome = Outcome.DELIVERED if applied else Outcome.SKIPPED
            _log_attempt(
                claim, outcome, result, duration_ms, request_id, attempt=claim.attempts + 1
            )
            return outcome
    return await _record(context, claim, result, started_at, duration_ms, request_id)


async def _claim_any(
    context: DeliveryContext, delivery_id: uuid.UUID, request_id: str | None
) -> _Claim | Outcome:
    """The claim step, in a shared transaction when the context batches (else, or when the
    batch could not decide this delivery, in one of its own)."""
    if context.batches is not None:
        decided = await context.batches.claim(context, delivery_id, request_id)
        if decided is not None:
            return decided
    return await _claim(context, delivery_id, request_id)


# Clients per gateway and stored credentials: decrypting the secret and deriving the token key
# once, not for every delivery. Bounded; a changed secret or subdomain is a new key.
_clients: "weakref.WeakKeyDictionary[QualtricsGateway, dict[tuple[str, str, str], QualtricsClient]]"
_clients = weakref.WeakKeyDictionary()
MAX_CACHED_CLIENTS = 1000


def _client_for(gateway: QualtricsGateway, connection: "_Connection") -> QualtricsClient:
    key = (connection.client_id, connection.client_secret_encrypted, connection.subdomain)
    clients = _clients.setdefault(gateway, {})
    client = clients.get(key)
    if client is None:
        if len(clients) >= MAX_CACHED_CLIENTS:
            clients.clear()
        stored = QualtricsConnection(
            integration_id=connection.integration_id,
            client_id=connection.client_id,
            client_secret_encrypted=connection.client_secret_encrypted,
            subdomain=connection.subdomain,
        )
        client = clients[key] = gateway.client_for(stored)
    return client


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
        due = _Due(
            delivery.id,
            delivery.integration_id,
            delivery.interaction_id,
            delivery.attempts,
            delivery.trigger_name,
        )
        integration = await session.get(Integration, delivery.integration_id)
        parts: _Parts | None = None
        if integration is not None:
            connection = await session.get(QualtricsConnection, integration.id)
            project = await session.get(QualtricsProject, integration.id)
            catalog_version = await session.scalar(
                select(Catalog.version).where(
                    Catalog.organization_id == integration.organization_id
                )
            )
            parts = _Parts(
                integration_id=integration.id,
                enabled=integration.enabled,
                health=integration.health,
                version=integration.version,
                connection=None if connection is None else _Connection.of(connection),
                survey_id=None if project is None else project.survey_id,
                project_updated_at=None if project is None else project.updated_at,
                catalog_version=catalog_version,
            )
        interaction = await session.get(Interaction, delivery.interaction_id)
        stored = None if interaction is None else (interaction.payload, interaction.revision)

        async def settle(due: _Due, outcome: Outcome, reason: str | None) -> Outcome:
            return await _settle(session, due, now, outcome, reason, request_id)

        decided = await _decide(context, due, parts, stored, settle, session)
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
            return _skip(delivery_id, "claimed by another run", request_id)
        return claim


@dataclass(frozen=True, slots=True)
class _Due:
    """A pending, due delivery, as a claim reads it."""

    id: uuid.UUID
    integration_id: uuid.UUID
    interaction_id: uuid.UUID
    attempts: int
    trigger_name: str


@dataclass(frozen=True, slots=True)
class _Connection:
    """The stored credentials a send needs; the secret stays encrypted until a client is made."""

    integration_id: uuid.UUID
    client_id: str
    client_secret_encrypted: str = field(repr=False)
    subdomain: str
    brand_id: str | None

    @classmethod
    def of(cls, connection: QualtricsConnection) -> "_Connection":
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
class _Parts:
    """What a delivery needs of its integration (None: that part is missing)."""

    integration_id: uuid.UUID
    enabled: bool
    health: IntegrationHealth
    version: int
    connection: _Connection | None
    survey_id: str | None
    project_updated_at: datetime | None
    catalog_version: int | None


@dataclass(frozen=True, slots=True)
class _Sendable:
    """A delivery that passed every check, with its encoded values; claimed next."""

    due: _Due
    connection: _Connection
    survey_id: str
    revision: int
    values: dict[str, Any]

    def claim(self, lease_until: datetime) -> _Claim:
        return _Claim(
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


# Holds or fails a due delivery that cannot be sent; answers the outcome (SKIPPED if the row
# moved meanwhile).
Settle = Callable[[_Due, Outcome, str | None], Awaitable[Outcome]]


async def _decide(
    context: DeliveryContext,
    due: _Due,
    parts: _Parts | None,
    interaction: tuple[dict[str, Any], int] | None,
    settle: Settle,
    session: AsyncSession | None,
) -> _Sendable | Outcome:
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
            InteractionPayload.model_validate(payload),
            trigger_name=due.trigger_name,
            creovai_app_url=context.settings.creovai_app_url,
        )
    except ValidationError as exc:
        reason = f"The stored interaction no longer validates: {_problems(exc)}"
        return await settle(due, Outcome.FAILED, reason)
    except Exception as exc:  # a poison interaction must fail, never crash-loop the job
        reason = f"The interaction could not be encoded: {_describe(exc)}"
        return await settle(due, Outcome.FAILED, reason)
    return _Sendable(due, parts.connection, parts.survey_id, revision, values)


class _Uncompilable(Exception):
    """The integration's selection cannot be compiled; the message is the delivery's reason."""


async def _plan(
    context: DeliveryContext, parts: _Parts, session: AsyncSession | None
) -> EncodingPlan:
    """The integration's compiled plan: cached, so the hot path reads a few small columns (the
    versions of the integration, the catalogue and the project) and compiles nothing."""
    if parts.project_updated_at is None:
        raise AssertionError("a project is needed to encode")  # _decide checked it
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
            f"The integration's data fields no longer validate: {_problems(exc)}"
        ) from exc
    except Exception as exc:  # a broken configuration must fail, never crash-loop the job
        raise _Uncompilable(
            f"The integration's data fields could not be compiled: {_describe(exc)}"
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
    delivery: Delivery | _Due,
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
    _log_settled(delivery, outcome, request_id)
    return outcome


def _log_settled(delivery: Delivery | _Due, outcome: Outcome, request_id: str | None) -> None:
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


# -- batching --------------------------------------------------------------------------------

MAX_BATCH = 100
# Under load, a batch of fewer steps than LINGER_BELOW waits up to BATCH_LINGER for more:
# measured with 50 jobs against a 50 ms Qualtrics, 5 ms gave 10-14 % more deliveries per
# second than none (each batch statement costs the worker and PostgreSQL about the same CPU
# whatever its size), 10 ms less than 5 ms (the wait itself holds the jobs).
BATCH_LINGER = 0.005
LINGER_BELOW = 8
# A batch statement that takes longer than this is abandoned (its connection discarded), and
# its runs do their step on their own: a database that stopped answering must not hold every
# job of the worker behind one statement.
BATCH_TIMEOUT = 10.0

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class _Coalescer(Generic[Item, Answer]):
    """Runs `flush` over whatever callers submitted meanwhile, one flush at a time.

    An idle coalescer flushes a lone item at once, and items that arrive during a flush go
    together in the next one (group commit). While items keep arriving, it waits up to
    `linger` before a flush of fewer than `LINGER_BELOW`, so batches grow under load; a lone
    item after a quiet spell never waits. A caller that is cancelled stops waiting, but its
    item's flush still runs to the end. A flush that raises answers None to each of its
    callers, which then do the work on their own.
    """

    def __init__(
        self,
        flush: Callable[[list[Item]], Awaitable[Sequence[Answer | None]]],
        max_batch: int,
        linger: float = 0.0,
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._linger = linger
        self._waiting: list[tuple[Item, asyncio.Future[Answer | None]]] = []
        self._running: asyncio.Task[None] | None = None
        self.flushes = 0
        self.items = 0

    async def submit(self, item: Item) -> Answer | None:
        future: asyncio.Future[Answer | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._running is None:
            self._running = asyncio.create_task(self._drain(), name="delivery-batch")
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            busy = False
            while self._waiting:
                if busy and self._linger and len(self._waiting) < LINGER_BELOW:
                    # Steps keep coming (this is not the first batch since idle): a moment's
                    # wait makes the next batch larger, each step cheaper.
                    await asyncio.sleep(self._linger)
                busy = True
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                self.flushes += 1
                self.items += len(batch)
                try:
                    results = await self._flush([item for item, _ in batch])
                except Exception as exc:
                    logger.warning(
                        "a batch of %d delivery steps failed (%s); each run does its own",
                        len(batch),
                        type(exc).__name__,
                        exc_info=True,
                    )
                    results = [None] * len(batch)
                except BaseException:
                    for _, future in [*batch, *self._waiting]:
                        if not future.done():
                            future.set_result(None)
                    self._waiting.clear()
                    raise
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._running = None

    async def aclose(self) -> None:
        """Wait until every submitted item was flushed."""
        while self._running is not None:
            await asyncio.gather(self._running, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class _Sql:
    """A batch statement compiled once: its text and its parameters in order."""

    text: str
    names: tuple[str, ...]
    defaults: dict[str, Any]  # the statement's own literal values (e.g. 'pending')

    @classmethod
    def of(cls, statement: ClauseElement, engine: AsyncEngine) -> "_Sql":
        compiled = cast(SQLCompiler, statement.compile(dialect=engine.dialect))
        return cls(compiled.string, tuple(compiled.positiontup or ()), dict(compiled.params))

    def arguments(self, params: dict[str, Any]) -> list[Any]:
        return [params[name] if name in params else self.defaults[name] for name in self.names]


class _Pinned:
    """One database connection kept for a coalescer's statements, outside any transaction
    (each batch is one statement, which commits by itself). Kept, not borrowed per batch, and
    driven through asyncpg directly with statements SQLAlchemy compiled once, so a batch costs
    one round trip and little more CPU than asyncpg's own (no checkout ping, no BEGIN or
    COMMIT, no per-execution compile-cache lookup and result processing: measured 1.3 ms of
    CPU for a claim in a transaction of its own, 0.3 ms as a batch of one). Any error discards
    the connection; the next batch opens another."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None
        self._driver: Any = None  # the asyncpg connection under it
        self._compiled: dict[int, _Sql] = {}

    async def fetch(self, statement: ClauseElement, params: dict[str, Any]) -> list[Any]:
        """The statement's rows (asyncpg records: `row["column"]`)."""
        sql = self._compiled.get(id(statement))
        if sql is None:
            sql = self._compiled[id(statement)] = _Sql.of(statement, self._engine)
        try:
            async with asyncio.timeout(BATCH_TIMEOUT):
                if self._driver is None:
                    self._connection = await self._engine.connect()
                    self._driver = (await self._connection.get_raw_connection()).driver_connection
                return list(await self._driver.fetch(sql.text, *sql.arguments(params)))
        except BaseException:
            await self.aclose(broken=True)
            raise

    async def aclose(self, *, broken: bool = False) -> None:
        connection, self._connection, self._driver = self._connection, None, None
        if connection is None:
            return
        with contextlib.suppress(Exception):
            if broken:
                await connection.invalidate()
            await connection.close()


@dataclass(frozen=True, slots=True, eq=False)  # each request is its own (hashed by identity)
class _Request:
    context: DeliveryContext
    delivery_id: uuid.UUID
    request_id: str | None


@dataclass(frozen=True, slots=True)
class _Done:
    """A delivered run, to record."""

    claim: _Claim
    result: _Result
    started_at: datetime
    duration_ms: int


class DeliveryBatches:
    """The claim and record steps of the runs in one worker, coalesced: one statement for
    whatever steps are waiting (see "Batching" in the module docstring). PostgreSQL only.

    Every run still gets exactly its own answer. A delivery the batch does not decide (its row
    locked by another transaction, not pending, a batch that failed) is answered None, and the
    run does the step on its own, as it would without batching.
    """

    def __init__(
        self, engine: AsyncEngine, *, max_batch: int = MAX_BATCH, linger: float = BATCH_LINGER
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("delivery batches need PostgreSQL (FOR UPDATE SKIP LOCKED)")
        self._claim_connection = _Pinned(engine)
        self._record_connection = _Pinned(engine)
        self._claims: _Coalescer[_Request, _Claim | Outcome] = _Coalescer(
            self._flush_claims, max_batch, linger
        )
        self._records: _Coalescer[tuple[DeliveryContext, _Done], bool] = _Coalescer(
            self._flush_records, max_batch, linger
        )

    def stats(self) -> dict[str, int]:
        """Steps and the statements they took, so far."""
        return {
            "claims": self._claims.items,
            "claim_batches": self._claims.flushes,
            "records": self._records.items,
            "record_batches": self._records.flushes,
        }

    async def claim(
        self, context: DeliveryContext, delivery_id: uuid.UUID, request_id: str | None
    ) -> _Claim | Outcome | None:
        return await self._claims.submit(_Request(context, delivery_id, request_id))

    async def record_delivered(self, context: DeliveryContext, done: _Done) -> bool | None:
        """Record a success; whether it was applied (False: the row was delivered already)."""
        return await self._records.submit((context, done))

    async def aclose(self) -> None:
        await self._claims.aclose()
        await self._records.aclose()
        await self._claim_connection.aclose()
        await self._record_connection.aclose()
        logger.info("delivery batches: %s", self.stats(), extra=self.stats())

    async def _flush_claims(self, requests: list[_Request]) -> list[_Claim | Outcome | None]:
        answers: dict[int, _Claim | Outcome | None] = {}
        for context, indexed in _by_context(requests, lambda request: request.context):
            decided = await self._claim_batch(context, [request for _, request in indexed])
            answers.update((index, decided.get(request)) for index, request in indexed)
        return [answers.get(index) for index in range(len(requests))]

    async def _flush_records(self, items: list[tuple[DeliveryContext, _Done]]) -> list[bool | None]:
        answers: dict[int, bool | None] = {}
        for context, indexed in _by_context(items, lambda item: item[0]):
            done = [done for _, (_, done) in indexed]
            applied = await self._record_batch(context, done)
            answers.update(
                (index, done.claim.delivery_id in applied) for index, (_, done) in indexed
            )
        return [answers.get(index) for index in range(len(items))]

    async def _claim_batch(
        self, context: DeliveryContext, requests: Sequence[_Request]
    ) -> dict[_Request, _Claim | Outcome]:
        """Claim the due ones among `requests` (one statement: locked, leased, read with
        their interactions and integrations), then decide each; left out: for the run."""
        now = context.clock()
        lease_until = now + context.lease_duration
        first: dict[uuid.UUID, _Request] = {}
        for request in requests:
            first.setdefault(request.delivery_id, request)
        rows = await self._claim_connection.fetch(
            _CLAIM_DUE, {"due_ids": list(first), "now": now, "lease_until": lease_until}
        )
        decided: dict[_Request, _Claim | Outcome] = {}
        for row in rows:
            request = first[row["id"]]
            due = _Due(
                row["id"],
                row["integration_id"],
                row["interaction_id"],
                row["attempts"],
                row["trigger_name"],
            )
            settle = functools.partial(self._settle, lease_until, now, request.request_id)
            sendable = await _decide(
                context, due, _parts_of(row), (row["payload"], row["revision"]), settle, None
            )
            decided[request] = (
                sendable if isinstance(sendable, Outcome) else sendable.claim(lease_until)
            )
        return decided

    async def _settle(
        self,
        lease_until: datetime,
        now: datetime,
        request_id: str | None,
        due: _Due,
        outcome: Outcome,
        reason: str | None,
    ) -> Outcome:
        """Hold or fail a delivery this batch claimed but cannot send (as `_settle`)."""
        status = DeliveryStatus.HELD if outcome is Outcome.HELD else DeliveryStatus.FAILED
        settled = await self._claim_connection.fetch(
            _SETTLE,
            {
                "settle_id": due.id,
                "lease_until": lease_until,
                "status": status,
                # Held: due as soon as enabling releases it; failed: never again.
                "next_attempt_at": now if outcome is Outcome.HELD else None,
                "last_error": None if reason is None else _cap(reason, MAX_REASON_CHARS),
                "now": now,
            },
        )
        if not settled:
            return _skip(due.id, "claimed by another run", request_id)
        _log_settled(due, outcome, request_id)
        return outcome

    async def _record_batch(
        self, context: DeliveryContext, done: Sequence[_Done]
    ) -> set[uuid.UUID]:
        """The attempt rows of many successes and each delivery `delivered` (unless it was
        already), in one statement; the ids it was applied to."""
        rows = await self._record_connection.fetch(
            _RECORD_DELIVERED,
            {
                "now": context.clock(),
                "attempt_ids": [uuid.uuid4() for _ in done],
                "delivered_ids": [item.claim.delivery_id for item in done],
                "started_ats": [item.started_at for item in done],
                "durations": [item.duration_ms for item in done],
                "status_codes": [item.result.status_code for item in done],
                "response_ids": [item.result.response_id for item in done],
                "revisions": [item.claim.revision for item in done],
            },
        )
        return {row["id"] for row in rows}


def _by_context(
    items: Sequence[Item], context_of: Callable[[Item], DeliveryContext]
) -> list[tuple[DeliveryContext, list[tuple[int, Item]]]]:
    groups: dict[int, tuple[DeliveryContext, list[tuple[int, Item]]]] = {}
    for index, item in enumerate(items):
        context = context_of(item)
        groups.setdefault(id(context), (context, []))[1].append((index, item))
    return list(groups.values())


def _parts_of(row: Any) -> _Parts | None:
    """What the claim statement read of the delivery's integration (None: there is none)."""
    if row["enabled"] is None:  # no integration row (the outer join found none)
        return None
    connection = None
    if row["client_id"] is not None:
        connection = _Connection(
            row["integration_id"],
            row["client_id"],
            row["client_secret_encrypted"],
            row["subdomain"],
            row["brand_id"],
        )
    return _Parts(
        integration_id=row["integration_id"],
        enabled=row["enabled"],
        health=IntegrationHealth(row["health"]),
        version=row["integration_version"],
        connection=connection,
        survey_id=row["survey_id"],
        project_updated_at=row["project_updated_at"],
        catalog_version=row["catalog_version"],
    )


# The batch statements, built from the models and compiled once per connection (`_Sql`), with
# bind parameters only; arrays carry the rows (`= ANY`, `unnest`), so one statement serves any
# batch size. PostgreSQL types come back as asyncpg gives them (aware UTC datetimes, UUIDs,
# JSON decoded by the codec SQLAlchemy installs); `_parts_of` converts the enum.

# Claim: lock the pending, due ones among the ids (skipping rows another transaction holds),
# lease them (`next_attempt_at` = the lease's end) and record the revision that will be sent,
# then read them with their interactions and what their integrations need.
_due = (
    select(Delivery.id)
    .where(
        Delivery.id == any_(bindparam("due_ids", type_=ARRAY(Uuid))),
        # Wrapped, so PostgreSQL finds the rows by id alone: with statistics that lag a surge
        # of pending deliveries (a bulk load, a backlog after an outage) it would otherwise
        # AND in the status index and read every pending row's entry for each batch (measured:
        # 12,000 entries per claim, cost growing with the backlog).
        func.coalesce(Delivery.status, "") == DeliveryStatus.PENDING,
        or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= bindparam("now")),
    )
    .order_by(Delivery.id)
    .with_for_update(skip_locked=True)
    .cte("due")
)
_claimed = (
    update(Delivery)
    .where(Delivery.id == _due.c.id, Interaction.id == Delivery.interaction_id)
    .values(
        next_attempt_at=bindparam("lease_until"),
        interaction_revision=Interaction.revision,
        updated_at=bindparam("now"),
    )
    .returning(
        Delivery.id,
        Delivery.integration_id,
        Delivery.interaction_id,
        Delivery.attempts,
        Delivery.trigger_name,
        Interaction.payload,
        Interaction.revision,
    )
    .cte("claimed")
)
_CLAIM_DUE = (
    select(
        _claimed,
        Integration.enabled,
        Integration.health,
        Integration.version.label("integration_version"),
        QualtricsConnection.client_id,
        QualtricsConnection.client_secret_encrypted,
        QualtricsConnection.subdomain,
        QualtricsConnection.brand_id,
        QualtricsProject.survey_id,
        QualtricsProject.updated_at.label("project_updated_at"),
        Catalog.version.label("catalog_version"),
    )
    .select_from(_claimed)
    .outerjoin(Integration, Integration.id == _claimed.c.integration_id)
    .outerjoin(QualtricsConnection, QualtricsConnection.integration_id == Integration.id)
    .outerjoin(QualtricsProject, QualtricsProject.integration_id == Integration.id)
    .outerjoin(Catalog, Catalog.organization_id == Integration.organization_id)
    .order_by(_claimed.c.id)
)

# Settle one claimed delivery that cannot be sent, fenced on this batch's lease.
_SETTLE = (
    update(Delivery)
    .where(
        Delivery.id == bindparam("settle_id"),
        Delivery.status == DeliveryStatus.PENDING,
        Delivery.next_attempt_at == bindparam("lease_until"),
    )
    .values(
        status=bindparam("status"),
        next_attempt_at=bindparam("next_attempt_at"),
        last_error=bindparam("last_error"),
        updated_at=bindparam("now"),
    )
    .returning(Delivery.id)
)

# Record successes: an attempt row each, and each delivery `delivered` unless it already is
# (not fenced: the response exists in Qualtrics, whatever happened to the row meanwhile).
_succeeded = (
    func.unnest(
        bindparam("attempt_ids", type_=ARRAY(Uuid)),
        bindparam("delivered_ids", type_=ARRAY(Uuid)),
        bindparam("started_ats", type_=ARRAY(DateTime(timezone=True))),
        bindparam("durations", type_=ARRAY(Integer)),
        bindparam("status_codes", type_=ARRAY(Integer)),
        bindparam("response_ids", type_=ARRAY(String)),
        bindparam("revisions", type_=ARRAY(Integer)),
    )
    .table_valued(
        column("attempt_id", Uuid),
        column("delivery_id", Uuid),
        column("started_at", DateTime(timezone=True)),
        column("duration_ms", Integer),
        column("status_code", Integer),
        column("response_id", String),
        column("revision", Integer),
    )
    .render_derived(name="succeeded")
)
_attempts = (
    insert(DeliveryAttempt)
    .from_select(
        ["id", "delivery_id", "started_at", "duration_ms", "outcome", "status_code", "counted"],
        select(
            _succeeded.c.attempt_id,
            _succeeded.c.delivery_id,
            _succeeded.c.started_at,
            _succeeded.c.duration_ms,
            literal(Outcome.DELIVERED.value, String),
            _succeeded.c.status_code,
            true(),
        ),
    )
    .cte("attempts")
)
_RECORD_DELIVERED = (
    update(Delivery)
    .add_cte(_attempts)
    .where(
        Delivery.id == _succeeded.c.delivery_id,
        Delivery.status != DeliveryStatus.DELIVERED,
    )
    .values(
        status=DeliveryStatus.DELIVERED,
        delivered_at=bindparam("now"),
        updated_at=bindparam("now"),
        response_id=_succeeded.c.response_id,
        attempts=Delivery.attempts + 1,
        next_attempt_at=None,
        last_error=None,
        interaction_revision=_succeeded.c.revision,
        # An `interaction.updated` that arrived after we encoded: the log says so (§7).
        newer_revision_after_delivery=func.coalesce(
            select(Interaction.revision)
            .where(Interaction.id == Delivery.interaction_id)
            .scalar_subquery()
            > _succeeded.c.revision,
            false(),
            type_=Boolean,
        ),
    )
    .returning(Delivery.id)
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
