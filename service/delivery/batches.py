"""The claim and record steps of a worker's concurrent runs, coalesced into shared statements:
`DeliveryBatches`, over group commits (service.kit.coalescer). See "Batching" in
`service.delivery.sender`; the statements are in `service.delivery.batch_sql`."""

import functools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from service.delivery.attempt_log import MAX_REASON_CHARS, cap, log_settled, logger, skip
from service.delivery.batch_sql import BATCH_TIMEOUT, CLAIM_DUE, RECORD_DELIVERED, SETTLE, parts_of
from service.delivery.claims import Claim, Due, decide
from service.delivery.classify import Result
from service.delivery.context import DeliveryContext, Outcome
from service.kit.coalescer import Coalescer
from service.kit.ids import time_ordered_uuids
from service.kit.pinned import PinnedConnection
from service.models import DeliveryStatus

MAX_BATCH = 100
# Under load, a batch of fewer steps than LINGER_BELOW waits up to BATCH_LINGER for more:
# measured with 50 jobs against a 50 ms Qualtrics, 5 ms gave 10-14 % more deliveries per
# second than none (each batch statement costs the worker and PostgreSQL about the same CPU
# whatever its size), 10 ms less than 5 ms (the wait itself holds the jobs).
BATCH_LINGER = 0.005
LINGER_BELOW = 8

Item = TypeVar("Item")


@dataclass(frozen=True, slots=True, eq=False)  # each request is its own (hashed by identity)
class _Request:
    context: DeliveryContext
    delivery_id: uuid.UUID
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Done:
    """A delivered run, to record."""

    claim: Claim
    result: Result
    started_at: datetime
    duration_ms: int


class DeliveryBatches:
    """The claim and record steps of the runs in one worker, coalesced: one statement for
    whatever steps are waiting (see "Batching" in `service.delivery.sender`). PostgreSQL only.

    Every run still gets exactly its own answer. A delivery the batch does not decide (its row
    locked by another transaction, not pending, a batch that failed) is answered None, and the
    run does the step on its own, as it would without batching.
    """

    def __init__(
        self, engine: AsyncEngine, *, max_batch: int = MAX_BATCH, linger: float = BATCH_LINGER
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("delivery batches need PostgreSQL (FOR UPDATE SKIP LOCKED)")
        self._claim_connection = PinnedConnection(engine, timeout=BATCH_TIMEOUT)
        self._record_connection = PinnedConnection(engine, timeout=BATCH_TIMEOUT)
        self._claims: Coalescer[_Request, Claim | Outcome] = Coalescer(
            self._flush_claims, max_batch, linger, LINGER_BELOW, name="delivery-claims"
        )
        self._records: Coalescer[tuple[DeliveryContext, Done], bool] = Coalescer(
            self._flush_records, max_batch, linger, LINGER_BELOW, name="delivery-records"
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
    ) -> Claim | Outcome | None:
        return await self._claims.submit(_Request(context, delivery_id, request_id))

    async def record_delivered(self, context: DeliveryContext, done: Done) -> bool | None:
        """Record a success; whether it was applied (False: the row was delivered already)."""
        return await self._records.submit((context, done))

    async def aclose(self) -> None:
        await self._claims.aclose()
        await self._records.aclose()
        await self._claim_connection.aclose()
        await self._record_connection.aclose()
        logger.info("delivery batches: %s", self.stats(), extra=self.stats())

    async def _flush_claims(self, requests: list[_Request]) -> list[Claim | Outcome | None]:
        answers: dict[int, Claim | Outcome | None] = {}
        for context, indexed in _by_context(requests, lambda request: request.context):
            decided = await self._claim_batch(context, [request for _, request in indexed])
            answers.update((index, decided.get(request)) for index, request in indexed)
        return [answers.get(index) for index in range(len(requests))]

    async def _flush_records(self, items: list[tuple[DeliveryContext, Done]]) -> list[bool | None]:
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
    ) -> dict[_Request, Claim | Outcome]:
        """Claim the due ones among `requests` (one statement: locked, leased, read with
        their interactions and integrations), then decide each; left out: for the run."""
        now = context.clock()
        lease_until = now + context.lease_duration
        first: dict[uuid.UUID, _Request] = {}
        for request in requests:
            first.setdefault(request.delivery_id, request)
        rows = await self._claim_connection.fetch(
            CLAIM_DUE, {"due_ids": list(first), "now": now, "lease_until": lease_until}
        )
        decided: dict[_Request, Claim | Outcome] = {}
        for row in rows:
            request = first[row["id"]]
            due = Due(
                row["id"],
                row["integration_id"],
                row["interaction_id"],
                row["attempts"],
                row["trigger_name"],
            )
            settle = functools.partial(self._settle, lease_until, now, request.request_id)
            sendable = await decide(
                context, due, parts_of(row), (row["payload"], row["revision"]), settle, None
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
        due: Due,
        outcome: Outcome,
        reason: str | None,
    ) -> Outcome:
        """Hold or fail a delivery this batch claimed but cannot send (as `claims._settle`)."""
        status = DeliveryStatus.HELD if outcome is Outcome.HELD else DeliveryStatus.FAILED
        settled = await self._claim_connection.fetch(
            SETTLE,
            {
                "settle_id": due.id,
                "lease_until": lease_until,
                "status": status,
                # Held: due as soon as enabling releases it; failed: never again.
                "next_attempt_at": now if outcome is Outcome.HELD else None,
                "last_error": None if reason is None else cap(reason, MAX_REASON_CHARS),
                "now": now,
            },
        )
        if not settled:
            return skip(due.id, "claimed by another run", request_id)
        log_settled(due, outcome, request_id)
        return outcome

    async def _record_batch(self, context: DeliveryContext, done: Sequence[Done]) -> set[uuid.UUID]:
        """The attempt rows of many successes and each delivery `delivered` (unless it was
        already), in one statement; the ids it was applied to."""
        rows = await self._record_connection.fetch(
            RECORD_DELIVERED,
            {
                "now": context.clock(),
                "attempt_ids": time_ordered_uuids(len(done)),
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
