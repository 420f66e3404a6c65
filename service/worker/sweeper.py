"""The sweeper: enqueues every delivery that is due and not enqueued recently (the outbox relay).

The database schedule is the truth (design §2, §8). Whatever happened to the queue (Redis
flushed or restarted without persistence, an enqueue after commit that failed, arq's 24 h job
expiry during a long Qualtrics outage, a retry the sender scheduled for later), every
`pending` delivery whose `next_attempt_at` has come is enqueued again by this loop, unless it was
enqueued recently:

    status = 'pending' AND next_attempt_at <= now
    AND (last_enqueued_at IS NULL                 -- never enqueued (the enqueue failed)
         OR last_enqueued_at < next_attempt_at    -- rescheduled after its last enqueue (retry)
         OR last_enqueued_at < now - stale_after) -- enqueued, yet still due: the job was lost

`stale_after` defaults to job_timeout + 15 s: longer than a job may run, plus arq's 10 s hold on
the jobs of a killed worker, so a delivery that is merely running is not offered again (it
would be harmless anyway: arq dedupes by job id and the sender claims the row).

It runs as a plain asyncio task in every worker (not an arq cron, which needs a queue to be
scheduled at all: arq #196), every `sweeper_interval`, and only one instance sweeps at a time:
on PostgreSQL it holds `pg_try_advisory_xact_lock` for the sweep, and the others skip their
turn; SQLite is the embedded default, one process. Rows go out in batches (oldest due first),
several batches per turn while whole batches keep coming back. Errors are logged, and the next
turn tries again.
"""

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.models import Delivery, DeliveryStatus
from service.models.base import utc_now

logger = logging.getLogger(__name__)

# One advisory lock key for every sweeper of this service on the database.
SWEEPER_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"creovai-qualtrics-connector:delivery-sweeper").digest()[:8],
    "big",
    signed=True,
)
# Batches per turn: bounds one turn's work (and how long it holds the lock) after an outage.
MAX_BATCHES_PER_SWEEP = 20


class EnqueueTarget(Protocol):
    async def submit(
        self, delivery_ids: Sequence[uuid.UUID], *, request_id: str | None = None
    ) -> int:
        """Enqueue; answer how many were accepted (fewer: the queue is unreachable or full)."""
        ...


@dataclass(frozen=True, slots=True)
class SweepResult:
    ran: bool  # False: another sweeper held the lock
    due: int = 0  # deliveries found due
    enqueued: int = 0  # of those, accepted by the queue


def due_query(*, now: datetime, stale_before: datetime, limit: int) -> Select[uuid.UUID]:
    """Due deliveries not enqueued since they became due, oldest first."""
    return (
        select(Delivery.id)
        .where(
            Delivery.status == DeliveryStatus.PENDING,
            Delivery.next_attempt_at <= now,
            or_(
                Delivery.last_enqueued_at.is_(None),
                Delivery.last_enqueued_at < Delivery.next_attempt_at,
                Delivery.last_enqueued_at < stale_before,
            ),
        )
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
    )


class Sweeper:
    def __init__(
        self,
        engine: AsyncEngine,
        target: EnqueueTarget,
        *,
        interval: timedelta,
        stale_after: timedelta,
        batch_size: int,
        clock: Callable[[], datetime] = utc_now,
        fresh_start: bool = False,
    ) -> None:
        self._engine = engine
        self._target = target
        self._interval = interval.total_seconds()
        self._stale_after = stale_after
        self._batch_size = batch_size
        self._clock = clock
        # In one process that just started (the embedded default), nothing can be queued yet:
        # its first sweep also takes what an earlier run enqueued but never sent.
        self._fresh_start = fresh_start
        self._task: asyncio.Task[None] | None = None

    async def sweep(self, *, include_recent: bool = False) -> SweepResult:
        """One turn; `include_recent` also takes due deliveries enqueued moments ago."""
        if self._engine.dialect.name != "postgresql":
            return await self._sweep(None, include_recent=include_recent)
        async with self._engine.connect() as connection, connection.begin():
            # Released with the transaction, also when this process dies mid-sweep.
            locked = await connection.scalar(
                select(func.pg_try_advisory_xact_lock(SWEEPER_LOCK_KEY))
            )
            if not locked:
                logger.debug("another sweeper is running; skipping this turn")
                return SweepResult(ran=False)
            return await self._sweep(connection, include_recent=include_recent)

    async def _sweep(
        self, connection: AsyncConnection | None, *, include_recent: bool
    ) -> SweepResult:
        due = enqueued = 0
        started = self._clock()
        # Fixed for the turn: whatever it stamps is never older than `started`, so a turn that
        # takes every due row (include_recent) still ends.
        stale_before = started if include_recent else started - self._stale_after
        for _ in range(MAX_BATCHES_PER_SWEEP):
            query = due_query(now=self._clock(), stale_before=stale_before, limit=self._batch_size)
            ids = await self._ids(connection, query)
            if not ids:
                break
            accepted = await self._target.submit(ids)
            due, enqueued = due + len(ids), enqueued + accepted
            if accepted < len(ids) or len(ids) < self._batch_size:
                break
        if due:
            logger.info("sweeper: %d deliveries due, %d enqueued", due, enqueued)
        return SweepResult(ran=True, due=due, enqueued=enqueued)

    async def _ids(
        self,
        connection: AsyncConnection | None,
        query: Select[uuid.UUID],
    ) -> list[uuid.UUID]:
        if connection is not None:
            return list((await connection.scalars(query)).all())
        # SQLite: a short connection of its own, returned before the enqueue writes its stamp.
        async with self._engine.connect() as own:
            return list((await own.scalars(query)).all())

    async def run(self) -> None:
        """Sweep every `interval` until cancelled; an error costs one turn, never the loop."""
        include_recent = self._fresh_start
        while True:
            try:
                await self.sweep(include_recent=include_recent)
                include_recent = False
            except Exception:
                logger.warning(
                    "sweep failed; trying again in %.1f s", self._interval, exc_info=True
                )
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="delivery-sweeper")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
