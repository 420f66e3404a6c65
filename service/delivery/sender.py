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

Where the steps live (all under `service.delivery`): `claims` (step 1, and the claim's types),
`classify` (what a send came to), `records` (step 3), `batches` and `batch_sql` (batching),
`attempt_log` (the log lines and the error texts), `context` (`DeliveryContext`, `Outcome`).
This module runs them in order and keeps the Qualtrics clients.
"""

import asyncio
import time
import uuid
import weakref

from service.connections.gateway import QualtricsGateway
from service.delivery.attempt_log import log_attempt, logger
from service.delivery.batches import Done
from service.delivery.claims import Connection, claim_any
from service.delivery.classify import classify, delivered, penalize
from service.delivery.context import DeliveryContext, Outcome
from service.delivery.ratelimit import RateLimitTimeout
from service.delivery.records import no_slot, record
from service.kit.crypto import SecretDecryptionError
from service.models import QualtricsConnection
from service.qualtrics import QualtricsClient, QualtricsError, QualtricsTimeout

__all__ = ["DeliveryContext", "Outcome", "send_delivery"]


async def send_delivery(
    context: DeliveryContext, delivery_id: uuid.UUID, *, request_id: str | None = None
) -> Outcome:
    """Try the delivery once if it is pending and due; see the module docstring."""
    claim = await claim_any(context, delivery_id, request_id)
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
        result = delivered(response_id)
    except RateLimitTimeout as exc:
        return await no_slot(context, claim, exc.retry_after, request_id)
    except TimeoutError:
        if waiting:
            return await no_slot(context, claim, None, request_id)
        if response_id is not None:  # the budget ran out while the slot was given back
            result = delivered(response_id)
        else:
            budget = context.send_budget.total_seconds()
            timeout = QualtricsTimeout(
                f"Qualtrics did not answer POST within the delivery's {budget:g} s budget",
                method="POST",
                path=f"/API/v3/surveys/{claim.survey_id}/responses",
            )
            result = classify(context, claim, timeout)
    except (QualtricsError, SecretDecryptionError, ValueError) as exc:
        result = classify(context, claim, exc)
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
        result = classify(context, claim, exc)
    duration_ms = int((time.monotonic() - started) * 1000)
    if result.penalty is not None:
        await penalize(context, claim.brand_key, result.penalty)
    if result.outcome is Outcome.DELIVERED and context.batches is not None:
        done = Done(claim, result, started_at, duration_ms)
        applied = await context.batches.record_delivered(context, done)
        if applied is not None:
            outcome = Outcome.DELIVERED if applied else Outcome.SKIPPED
            log_attempt(claim, outcome, result, duration_ms, request_id, attempt=claim.attempts + 1)
            return outcome
    return await record(context, claim, result, started_at, duration_ms, request_id)


# Clients per gateway and stored credentials: decrypting the secret and deriving the token key
# once, not for every delivery. Bounded; a changed secret or subdomain is a new key.
_clients: "weakref.WeakKeyDictionary[QualtricsGateway, dict[tuple[str, str, str], QualtricsClient]]"
_clients = weakref.WeakKeyDictionary()
MAX_CACHED_CLIENTS = 1000


def _client_for(gateway: QualtricsGateway, connection: Connection) -> QualtricsClient:
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
