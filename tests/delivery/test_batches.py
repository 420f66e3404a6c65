"""`DeliveryBatches`: concurrent runs claim and record in shared statements (PostgreSQL only).

`test_sender.py` runs every scenario with batches too (the `delivery_context` fixture); these
tests check what only batching does: runs are coalesced, a row locked elsewhere or a failed
batch falls back to the run's own transaction, and nothing is claimed or recorded twice.
"""

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.delivery.batches import DeliveryBatches
from service.delivery.encoding_cache import PlanCache
from service.delivery.sender import DeliveryContext, Outcome, send_delivery
from service.kit.coalescer import Coalescer
from service.models import Delivery, DeliveryStatus, Integration
from service.testing.fake_qualtrics import FakeQualtrics
from tests.delivery.conftest import (
    Clock,
    DeliveryFactory,
    Ready,
    RecordingLimiter,
    load_attempts,
    load_delivery,
)

Sessionmaker = async_sessionmaker[AsyncSession]


@pytest.fixture(scope="session")
def database_url(postgres_url: str) -> str:
    return postgres_url


@pytest.fixture
async def batches(app: FastAPI) -> AsyncIterator[DeliveryBatches]:
    made = DeliveryBatches(app.state.engine)
    yield made
    await made.aclose()


@pytest.fixture
def context(
    app: FastAPI,
    settings: Settings,
    qualtrics: FakeQualtrics,
    clock: Clock,
    limiter: RecordingLimiter,
    batches: DeliveryBatches,
) -> DeliveryContext:
    return DeliveryContext(
        sessionmaker=app.state.sessionmaker,
        gateway=app.state.qualtrics,
        limiter=limiter,
        settings=settings,
        clock=clock,
        rand=random.Random(7).random,
        plans=PlanCache(),
        batches=batches,
    )


async def test_concurrent_runs_share_statements(
    context: DeliveryContext,
    batches: DeliveryBatches,
    make_delivery: DeliveryFactory,
    qualtrics: FakeQualtrics,
    ready: Ready,
    sessionmaker: Sessionmaker,
) -> None:
    ids = [await make_delivery() for _ in range(12)]

    outcomes = await asyncio.gather(*(send_delivery(context, delivery_id) for delivery_id in ids))

    assert outcomes == [Outcome.DELIVERED] * 12
    keys = sorted(response.idempotency_key for response in qualtrics.responses(ready.survey_id))
    assert keys == sorted(str(delivery_id) for delivery_id in ids)
    stats = batches.stats()
    assert (stats["claims"], stats["records"]) == (12, 12)
    assert stats["claim_batches"] < 12  # coalesced
    assert stats["record_batches"] < 12
    for delivery_id in ids:
        delivery = await load_delivery(sessionmaker, delivery_id)
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 1)
        [attempt] = await load_attempts(sessionmaker, delivery_id)
        assert (attempt.outcome, attempt.status_code, attempt.counted) == ("delivered", 200, True)


async def test_a_row_locked_elsewhere_is_claimed_by_its_run_once_free(
    context: DeliveryContext,
    make_delivery: DeliveryFactory,
    qualtrics: FakeQualtrics,
    ready: Ready,
    sessionmaker: Sessionmaker,
) -> None:
    """SKIP LOCKED: the batch never waits; the run falls back and waits for the row."""
    delivery_id = await make_delivery()
    async with sessionmaker.begin() as holder:
        await holder.execute(
            select(Delivery.id).where(Delivery.id == delivery_id).with_for_update()
        )
        run = asyncio.create_task(send_delivery(context, delivery_id))
        await asyncio.sleep(0.3)
        assert not run.done()  # waiting in its own claim, behind our lock
    assert await run is Outcome.DELIVERED
    assert [r.idempotency_key for r in qualtrics.responses(ready.survey_id)] == [str(delivery_id)]


async def test_the_same_delivery_twice_in_a_batch_is_sent_once(
    context: DeliveryContext,
    make_delivery: DeliveryFactory,
    qualtrics: FakeQualtrics,
    ready: Ready,
) -> None:
    delivery_id = await make_delivery()

    outcomes = await asyncio.gather(*(send_delivery(context, delivery_id) for _ in range(3)))

    assert sorted(outcomes) == sorted([Outcome.DELIVERED, Outcome.SKIPPED, Outcome.SKIPPED])
    assert len(qualtrics.responses(ready.survey_id)) == 1


async def test_held_and_failed_in_a_batch(
    context: DeliveryContext,
    make_delivery: DeliveryFactory,
    ready: Ready,
    sessionmaker: Sessionmaker,
    clock: Clock,
) -> None:
    poison = await make_delivery(payload={"id": "call-poison", "channel": "fax"})
    fine = await make_delivery()

    outcomes = await asyncio.gather(send_delivery(context, poison), send_delivery(context, fine))

    assert outcomes == [Outcome.FAILED, Outcome.DELIVERED]
    failed = await load_delivery(sessionmaker, poison)
    assert (failed.status, failed.attempts, failed.next_attempt_at) == (
        DeliveryStatus.FAILED,
        0,
        None,
    )
    assert failed.last_error is not None
    assert failed.last_error.startswith("The stored interaction no longer validates")
    assert await load_attempts(sessionmaker, poison) == []

    async with sessionmaker.begin() as session:
        await session.execute(
            update(Integration).where(Integration.id == ready.integration_id).values(enabled=False)
        )
    held = await make_delivery()
    assert await send_delivery(context, held) is Outcome.HELD
    row = await load_delivery(sessionmaker, held)
    assert (row.status, row.next_attempt_at) == (DeliveryStatus.HELD, clock())


async def test_a_success_recorded_elsewhere_first_is_skipped(
    context: DeliveryContext,
    make_delivery: DeliveryFactory,
    limiter: RecordingLimiter,
    sessionmaker: Sessionmaker,
) -> None:
    """The record is not fenced, but a row already delivered is not delivered twice."""
    delivery_id = await make_delivery()

    async def deliver_meanwhile() -> None:
        async with sessionmaker.begin() as session:
            await session.execute(
                update(Delivery)
                .where(Delivery.id == delivery_id)
                .values(status=DeliveryStatus.DELIVERED, response_id="R_elsewhere")
            )

    limiter.on_slot = deliver_meanwhile

    assert await send_delivery(context, delivery_id) is Outcome.SKIPPED
    delivery = await load_delivery(sessionmaker, delivery_id)
    assert delivery.response_id == "R_elsewhere"
    assert len(await load_attempts(sessionmaker, delivery_id)) == 1  # this run's attempt


async def test_a_failing_batch_falls_back_to_each_run(
    context: DeliveryContext,
    batches: DeliveryBatches,
    make_delivery: DeliveryFactory,
    qualtrics: FakeQualtrics,
    ready: Ready,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*_: object) -> object:
        raise ConnectionResetError("the database went away mid-batch")

    monkeypatch.setattr(batches, "_claim_batch", broken)
    monkeypatch.setattr(batches, "_record_batch", broken)
    ids = [await make_delivery() for _ in range(3)]

    outcomes = await asyncio.gather(*(send_delivery(context, delivery_id) for delivery_id in ids))

    assert outcomes == [Outcome.DELIVERED] * 3
    assert len(qualtrics.responses(ready.survey_id)) == 3
    assert "each caller does its step alone" in caplog.text


async def test_a_broken_connection_is_replaced(
    context: DeliveryContext,
    batches: DeliveryBatches,
    make_delivery: DeliveryFactory,
    app: FastAPI,
) -> None:
    assert await send_delivery(context, await make_delivery()) is Outcome.DELIVERED
    pinned = batches._claim_connection._connection
    assert pinned is not None
    async with app.state.engine.connect() as admin:
        pid = (await pinned.get_raw_connection()).driver_connection.get_server_pid()
        await admin.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")

    # The batch fails on the dead connection (the run claims on its own), then reconnects.
    assert await send_delivery(context, await make_delivery()) is Outcome.DELIVERED
    assert await send_delivery(context, await make_delivery()) is Outcome.DELIVERED
    assert batches._claim_connection._connection is not pinned


async def test_a_cancelled_run_still_has_its_success_recorded(
    context: DeliveryContext,
    batches: DeliveryBatches,
    make_delivery: DeliveryFactory,
    qualtrics: FakeQualtrics,
    ready: Ready,
    sessionmaker: Sessionmaker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The record runs in the batch's own task: a job cancelled while it waits for the record
    (a shutdown's second signal) does not lose a response Qualtrics already stored."""
    record = batches._record_batch
    recording = asyncio.Event()

    async def slow_record(*args: Any) -> set[uuid.UUID]:
        recording.set()
        await asyncio.sleep(0.3)
        return await record(*args)

    monkeypatch.setattr(batches, "_record_batch", slow_record)
    delivery_id = await make_delivery()
    run = asyncio.create_task(send_delivery(context, delivery_id))
    await recording.wait()
    assert len(qualtrics.responses(ready.survey_id)) == 1
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run

    await batches.aclose()  # as the worker's shutdown does: the pending batch commits
    assert (await load_delivery(sessionmaker, delivery_id)).status == DeliveryStatus.DELIVERED


def test_batches_need_postgresql(sqlite_url: str) -> None:
    from service.db import create_engine

    engine = create_engine(sqlite_url)
    with pytest.raises(ValueError, match="PostgreSQL"):
        DeliveryBatches(engine)


async def test_a_lone_run_does_not_wait(
    context: DeliveryContext, batches: DeliveryBatches, make_delivery: DeliveryFactory
) -> None:
    delivery_id: uuid.UUID = await make_delivery()
    assert await send_delivery(context, delivery_id) is Outcome.DELIVERED
    assert batches.stats() == {
        "claims": 1,
        "claim_batches": 1,
        "records": 1,
        "record_batches": 1,
    }


class TestCoalescer:
    async def test_a_lone_item_is_flushed_at_once_and_a_busy_stream_lingers(self) -> None:
        flushed: list[list[int]] = []

        async def flush(items: list[int]) -> list[int]:
            flushed.append(items)
            await asyncio.sleep(0.05)
            return [item * 10 for item in items]

        coalescer: Coalescer[int, int] = Coalescer(flush, max_batch=100, linger=0.3)
        started = time.monotonic()
        assert await coalescer.submit(1) == 10
        assert time.monotonic() - started < 0.25  # no linger after a quiet spell

        first = asyncio.create_task(coalescer.submit(2))
        await asyncio.sleep(0.01)  # the flush of [2] is running
        later = [asyncio.create_task(coalescer.submit(n)) for n in (3, 4)]
        await asyncio.sleep(0.1)  # [2] done; [3, 4] linger for more
        last = asyncio.create_task(coalescer.submit(5))
        assert await asyncio.gather(first, *later, last) == [20, 30, 40, 50]
        assert flushed == [[1], [2], [3, 4, 5]]

    async def test_a_failed_flush_answers_none(self) -> None:
        async def flush(items: list[int]) -> list[int]:
            raise RuntimeError("down")

        coalescer: Coalescer[int, int] = Coalescer(flush, max_batch=10)
        assert await coalescer.submit(1) is None

    async def test_batches_are_bounded(self) -> None:
        sizes: list[int] = []

        async def flush(items: list[int]) -> list[int]:
            sizes.append(len(items))
            await asyncio.sleep(0)
            return items

        coalescer: Coalescer[int, int] = Coalescer(flush, max_batch=3)
        assert await asyncio.gather(*(coalescer.submit(n) for n in range(7))) == list(range(7))
        assert max(sizes) == 3
        assert sum(sizes) == 7
