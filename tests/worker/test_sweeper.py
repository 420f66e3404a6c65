"""The sweeper against PostgreSQL: which deliveries it takes, in what order, and its lock."""

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.delivery.queue import mark_enqueued
from service.models import Delivery, DeliveryStatus
from service.models.base import utc_now
from service.worker.sweeper import Sweeper
from tests.conftest import Account
from tests.worker.conftest import enabled_integration, plan_deliveries

STALE_AFTER = timedelta(seconds=30)


class Target:
    """Records what the sweeper submits and stamps it as a real dispatcher does."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker
        self.batches: list[list[uuid.UUID]] = []
        self.accept: int | None = None  # None: everything
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.failures = 0

    @property
    def submitted(self) -> list[uuid.UUID]:
        return [delivery_id for batch in self.batches for delivery_id in batch]

    async def submit(
        self, delivery_ids: Sequence[uuid.UUID], *, request_id: str | None = None
    ) -> int:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the queue is down")
        accepted = list(delivery_ids)[: self.accept] if self.accept is not None else delivery_ids
        self.batches.append(list(delivery_ids))
        await mark_enqueued(self.sessionmaker, list(accepted), utc_now())
        return len(accepted)


def sweeper(app: FastAPI, target: Target, *, batch_size: int = 500) -> Sweeper:
    engine: AsyncEngine = app.state.engine
    return Sweeper(
        engine,
        target,
        interval=timedelta(milliseconds=50),
        stale_after=STALE_AFTER,
        batch_size=batch_size,
    )


async def set_rows(
    sessionmaker: async_sessionmaker[AsyncSession], ids: Sequence[uuid.UUID], **values: object
) -> None:
    async with sessionmaker.begin() as session:
        await session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(**values))


@pytest.fixture
async def deliveries(
    client: httpx.AsyncClient, admin: Account, sessionmaker: async_sessionmaker[AsyncSession]
) -> list[uuid.UUID]:
    integration = await enabled_integration(client, admin)
    return await plan_deliveries(sessionmaker, integration.organization_id, 8)


class TestWhatIsDue:
    async def test_due_and_not_recently_enqueued_only(
        self,
        app: FastAPI,
        sessionmaker: async_sessionmaker[AsyncSession],
        deliveries: list[uuid.UUID],
    ) -> None:
        now = utc_now()
        never, stale, retry, recent, future, delivered, held, old = deliveries
        await set_rows(sessionmaker, [never], next_attempt_at=now - timedelta(seconds=3))
        await set_rows(
            sessionmaker,
            [stale],  # enqueued long ago, still due: its job was lost with Redis
            next_attempt_at=now - timedelta(minutes=5),
            last_enqueued_at=now - timedelta(minutes=2),
        )
        await set_rows(
            sessionmaker,
            [retry],  # rescheduled by the sender after its last enqueue, and due now
            next_attempt_at=now - timedelta(seconds=1),
            last_enqueued_at=now - timedelta(seconds=5),
        )
        await set_rows(
            sessionmaker,
            [recent],  # enqueued a moment ago, after it became due: queued or running
            next_attempt_at=now - timedelta(seconds=10),
            last_enqueued_at=now - timedelta(seconds=2),
        )
        await set_rows(sessionmaker, [future], next_attempt_at=now + timedelta(seconds=60))
        await set_rows(
            sessionmaker,
            [delivered],
            status=DeliveryStatus.DELIVERED,
            next_attempt_at=now - timedelta(minutes=1),
        )
        await set_rows(sessionmaker, [held], status=DeliveryStatus.HELD)
        await set_rows(sessionmaker, [old], next_attempt_at=now - timedelta(hours=30))
        target = Target(sessionmaker)

        result = await sweeper(app, target).sweep()

        # Oldest due first: a day-old retry (past arq's 24 h job expiry) is still carried.
        assert target.submitted == [old, stale, never, retry]
        assert (result.ran, result.due, result.enqueued) == (True, 4, 4)
        # Stamped: the next turn leaves them alone.
        again = await sweeper(app, target).sweep()
        assert (again.ran, again.due) == (True, 0)

    async def test_batches_in_order_until_a_short_batch(
        self,
        app: FastAPI,
        sessionmaker: async_sessionmaker[AsyncSession],
        deliveries: list[uuid.UUID],
    ) -> None:
        now = utc_now()
        for position, delivery_id in enumerate(deliveries):
            await set_rows(
                sessionmaker, [delivery_id], next_attempt_at=now - timedelta(seconds=60 - position)
            )
        target = Target(sessionmaker)

        result = await sweeper(app, target, batch_size=3).sweep()

        assert [len(batch) for batch in target.batches] == [3, 3, 2]
        assert target.submitted == deliveries
        assert result.enqueued == 8

    async def test_stops_when_the_queue_takes_no_more(
        self,
        app: FastAPI,
        sessionmaker: async_sessionmaker[AsyncSession],
        deliveries: list[uuid.UUID],
    ) -> None:
        target = Target(sessionmaker)
        target.accept = 1  # e.g. Redis failed after the first enqueue

        result = await sweeper(app, target, batch_size=3).sweep()

        assert len(target.batches) == 1
        assert (result.due, result.enqueued) == (3, 1)

    async def test_include_recent_takes_recent_enqueues_once(
        self,
        app: FastAPI,
        sessionmaker: async_sessionmaker[AsyncSession],
        deliveries: list[uuid.UUID],
    ) -> None:
        # Enqueued a moment ago into a queue that no longer exists (an embedded restart).
        await set_rows(sessionmaker, deliveries, last_enqueued_at=utc_now())
        target = Target(sessionmaker)
        assert (await sweeper(app, target).sweep()).due == 0

        result = await sweeper(app, target, batch_size=3).sweep(include_recent=True)

        assert sorted(target.submitted) == sorted(deliveries)  # each once: the turn ends
        assert result.enqueued == 8


class TestOneSweeperAtATime:
    async def test_a_second_sweeper_skips_its_turn_while_the_first_holds_the_lock(
        self,
        app: FastAPI,
        sessionmaker: async_sessionmaker[AsyncSession],
        deliveries: list[uuid.UUID],
    ) -> None:
        first, second = Target(sessionmaker), Target(sessionmaker)
        first.gate = asyncio.Event()
        running = asyncio.create_task(sweeper(app, first).sweep())
        await asyncio.wait_for(first.entered.wait(), timeout=5)

        skipped = await sweeper(app, second).sweep()

        assert skipped.ran is False
        assert second.batches == []
        first.gate.set()
        done = await asyncio.wait_for(running, timeout=5)
        assert (done.ran, done.enqueued) == (True, 8)
        # The lock went with the first sweeper's transaction.
        after = await sweeper(app, second).sweep()
        assert (after.ran, after.due) == (True, 0)


class TestTheLoop:
    async def test_an_error_costs_one_turn_not_the_loop(
        self,
        app: FastAPI,
        sessionmaker: async_sessionmaker[AsyncSession],
        deliveries: list[uuid.UUID],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        target = Target(sessionmaker)
        target.failures = 2
        loop = sweeper(app, target)
        caplog.set_level(logging.WARNING, logger="service.worker.sweeper")

        loop.start()
        try:
            for _ in range(100):
                if len(target.submitted) == 8:
                    break
                await asyncio.sleep(0.02)
        finally:
            await loop.stop()

        assert sorted(target.submitted) == sorted(deliveries)
        assert sum("sweep failed" in record.message for record in caplog.records) == 2
