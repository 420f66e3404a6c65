"""`ArqDispatcher` against a real Redis (our own redis-server): ids, JSON, dedupe, failures."""

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
from arq.connections import ArqRedis
from arq.typing import WorkerCoroutine
from arq.worker import Function, Worker, func
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.delivery.dispatch import job_id
from service.delivery.queue import (
    ArqDispatcher,
    arq_redis,
    job_deserializer,
    job_serializer,
)
from service.delivery.sender import Outcome
from service.models import Delivery
from service.models.base import utc_now
from service.worker import tasks
from tests.conftest import Account, free_port
from tests.worker.conftest import enabled_integration, plan_deliveries

QUEUE = "arq:queue"


@pytest.fixture
async def pool(redis_url: str) -> AsyncIterator[ArqRedis]:
    redis = arq_redis(redis_url)
    yield redis
    await redis.aclose(close_connection_pool=True)


@pytest.fixture
async def deliveries(
    client: httpx.AsyncClient, admin: Account, sessionmaker: async_sessionmaker[AsyncSession]
) -> list[uuid.UUID]:
    integration = await enabled_integration(client, admin)
    return await plan_deliveries(sessionmaker, integration.organization_id, 3)


async def stamps(
    sessionmaker: async_sessionmaker[AsyncSession], ids: list[uuid.UUID]
) -> dict[uuid.UUID, Any]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Delivery.id, Delivery.last_enqueued_at).where(Delivery.id.in_(ids))
        )
        return dict(rows.all())


class TestArqDispatcher:
    async def test_one_json_job_per_delivery_with_a_deterministic_id(
        self,
        app: FastAPI,
        sessionmaker: async_sessionmaker[AsyncSession],
        pool: ArqRedis,
        deliveries: list[uuid.UUID],
    ) -> None:
        before = utc_now()
        dispatcher = ArqDispatcher(pool, sessionmaker)

        await dispatcher.enqueue(deliveries, request_id="req-1")

        queued = {member.decode() for member in await pool.zrange(QUEUE, 0, -1)}
        assert queued == {job_id(delivery_id) for delivery_id in deliveries}
        raw = await pool.get(f"arq:job:{job_id(deliveries[0])}")
        assert raw is not None
        job = json.loads(raw)  # JSON, not pickle: ids and primitives only
        assert job["f"] == "delivery.send"
        assert job["a"] == [str(deliveries[0])]
        assert job["k"] == {"request_id": "req-1"}
        stamped = await stamps(sessionmaker, deliveries)
        assert all(stamp is not None and stamp >= before for stamp in stamped.values())

    async def test_enqueueing_a_queued_delivery_adds_nothing(
        self,
        app: FastAPI,
        sessionmaker: async_sessionmaker[AsyncSession],
        pool: ArqRedis,
        deliveries: list[uuid.UUID],
    ) -> None:
        dispatcher = ArqDispatcher(pool, sessionmaker)
        assert await dispatcher.submit(deliveries[:2]) == 2

        # Queued already (api + sweeper racing): accepted, no second job.
        assert await dispatcher.submit(deliveries) == 3
        assert await pool.zcard(QUEUE) == 3
        again = await pool.enqueue_job(
            "delivery.send", str(deliveries[0]), _job_id=job_id(deliveries[0])
        )
        assert again is None

    async def test_a_finished_job_does_not_block_the_next_enqueue(
        self,
        app: FastAPI,
        sessionmaker: async_sessionmaker[AsyncSession],
        pool: ArqRedis,
        deliveries: list[uuid.UUID],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """keep_result=0: arq drops an enqueue for as long as a kept result of that id exists."""
        ran: list[tuple[str, str | None]] = []

        async def fake_run(
            context: object, delivery_id: uuid.UUID, *, request_id: str | None = None
        ) -> Outcome:
            ran.append((str(delivery_id), request_id))
            return Outcome.RETRY_SCHEDULED  # the sender rescheduled it in the database

        monkeypatch.setattr(tasks, "run_delivery", fake_run)
        dispatcher = ArqDispatcher(pool, sessionmaker)

        async def drain(task: Function) -> None:
            worker = Worker(
                functions=[task],
                redis_pool=pool,
                burst=True,
                poll_delay=0.01,
                keep_result=3600,  # arq's default; our task overrides it with 0
                handle_signals=False,
                job_serializer=job_serializer,
                job_deserializer=job_deserializer,
                ctx={"delivery": object()},
            )
            await worker.async_run()

        ours = tasks.delivery_send(timeout=5)
        await dispatcher.enqueue([deliveries[0]], request_id="first")
        await drain(ours)
        await dispatcher.enqueue([deliveries[0]], request_id="retry")
        await drain(ours)
        assert ran == [(str(deliveries[0]), "first"), (str(deliveries[0]), "retry")]

        # The trap: with a kept result, the retry's enqueue is silently dropped.
        keeps_result = func(cast(WorkerCoroutine, tasks.send), name="delivery.send")
        await dispatcher.enqueue([deliveries[1]], request_id="first")
        await drain(keeps_result)
        await dispatcher.enqueue([deliveries[1]], request_id="dropped")
        assert await pool.zcard(QUEUE) == 0
        await drain(keeps_result)
        assert ran[2:] == [(str(deliveries[1]), "first")]

    async def test_a_redis_outage_is_logged_not_raised(
        self,
        app: FastAPI,
        sessionmaker: async_sessionmaker[AsyncSession],
        deliveries: list[uuid.UUID],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        dispatcher = ArqDispatcher.from_url(f"redis://127.0.0.1:{free_port()}/0", sessionmaker)
        started = time.monotonic()
        try:
            assert await dispatcher.submit(deliveries) == 0
            await dispatcher.enqueue(deliveries)
        finally:
            await dispatcher.aclose()

        assert time.monotonic() - started < 5  # one failed connect per call, not per delivery
        assert set((await stamps(sessionmaker, deliveries)).values()) == {None}
        assert "the sweeper will enqueue the rest" in caplog.text
