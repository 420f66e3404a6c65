"""`service worker` as a real process: delivery end to end, and the failures it must survive.

Each test sets up an integration through the API (the fake Qualtrics over HTTP), stores
interactions and their deliveries with the planner, enqueues them through `ArqDispatcher`, and
checks the fake: every delivery exactly once (by Idempotency-Key), none lost.
"""

import asyncio
import signal
import time
import uuid
from collections.abc import Callable

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.delivery.queue import ArqDispatcher
from service.models import Delivery, DeliveryAttempt, DeliveryStatus
from service.models.base import utc_now
from tests.conftest import Account
from tests.worker.conftest import (
    RedisServer,
    Workers,
    count_by_status,
    enabled_integration,
    eventually,
    plan_deliveries,
    response_posts,
    responses_by_key,
    wait_until_delivered,
)


async def enqueue(
    redis_url: str, sessionmaker: async_sessionmaker[AsyncSession], ids: list[uuid.UUID]
) -> None:
    dispatcher = ArqDispatcher.from_url(redis_url, sessionmaker)
    try:
        await dispatcher.enqueue(ids, request_id="test-request")
    finally:
        await dispatcher.aclose()


def assert_each_once(by_key: dict[str, int], ids: list[uuid.UUID]) -> None:
    assert sorted(by_key) == sorted(str(delivery_id) for delivery_id in ids), "lost or foreign"
    assert set(by_key.values()) == {1}, "a delivery was recorded twice"


async def in_flight(sessionmaker: async_sessionmaker[AsyncSession], ids: list[uuid.UUID]) -> int:
    """Deliveries claimed by a run right now (the sender's lease moves next_attempt_at ahead)."""
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).where(
                Delivery.id.in_(ids),
                Delivery.status == DeliveryStatus.PENDING,
                Delivery.next_attempt_at > utc_now(),
            )
        )
        return count or 0


async def hang_after_storing_responses(control: httpx.AsyncClient, *, seconds: float) -> None:
    """The fake stores each response, then waits before answering: requests in flight."""
    fault = {
        "kind": "hang",
        "phase": "after",
        "seconds": seconds,
        "method": "POST",
        "path_pattern": "/responses$",
        "count": None,
    }
    answer = await control.post("/_fake/faults", json=fault)
    assert answer.status_code in (200, 201), answer.text


async def stored_at_least(
    control: httpx.AsyncClient, survey_id: str, count: int, *, explain: Callable[[], str]
) -> None:
    async def stored() -> bool:
        return len(await responses_by_key(control, survey_id)) >= count

    await eventually(stored, within=10, explain=explain)


class TestDelivery:
    async def test_every_delivery_lands_exactly_once(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
        fake_control: httpx.AsyncClient,
        redis_url: str,
        workers: Workers,
    ) -> None:
        integration = await enabled_integration(client, admin)
        worker = workers.start()
        ids = await plan_deliveries(sessionmaker, integration.organization_id, 40)

        await enqueue(redis_url, sessionmaker, ids)
        took = await wait_until_delivered(sessionmaker, ids, within=20, worker=worker)

        assert_each_once(await responses_by_key(fake_control, integration.survey_id), ids)
        async with sessionmaker() as session:
            attempts = await session.scalar(
                select(func.count()).where(DeliveryAttempt.delivery_id.in_(ids))
            )
        assert attempts == len(ids)
        print(f"\n40 deliveries through one worker in {took:.2f} s")

    async def test_sigterm_lets_requests_in_flight_finish(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
        fake_control: httpx.AsyncClient,
        redis_url: str,
        workers: Workers,
    ) -> None:
        integration = await enabled_integration(client, admin)
        await hang_after_storing_responses(fake_control, seconds=1.5)
        worker = workers.start()
        ids = await plan_deliveries(sessionmaker, integration.organization_id, 10)
        await enqueue(redis_url, sessionmaker, ids)
        # Every POST has reached Qualtrics (stored), and every answer is still on its way.
        await stored_at_least(fake_control, integration.survey_id, len(ids), explain=worker.log)
        assert await count_by_status(sessionmaker, ids) == {DeliveryStatus.PENDING: len(ids)}

        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0, worker.log()[-3000:]

        # Every request in flight finished and was recorded before the process ended.
        assert await count_by_status(sessionmaker, ids) == {DeliveryStatus.DELIVERED: len(ids)}
        assert_each_once(await responses_by_key(fake_control, integration.survey_id), ids)


class TestFailures:
    async def test_flushed_redis_loses_nothing(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
        fake_control: httpx.AsyncClient,
        redis_url: str,
        redis_server: RedisServer,
        workers: Workers,
    ) -> None:
        integration = await enabled_integration(client, admin)
        await fake_control.patch("/_fake/config", json={"latency_seconds": 0.2})
        # Five at a time, so most jobs still wait in Redis when it is flushed.
        worker = workers.start(worker_max_jobs="5", sweep_stale_after="1")
        ids = await plan_deliveries(sessionmaker, integration.organization_id, 40)
        await enqueue(redis_url, sessionmaker, ids)

        async def some_delivered() -> bool:
            counts = await count_by_status(sessionmaker, ids)
            return counts.get(DeliveryStatus.DELIVERED, 0) >= 5

        await eventually(some_delivered, within=10, explain=worker.log)

        redis_server.flushall()
        flushed_at = time.monotonic()
        undelivered = len(ids) - (await count_by_status(sessionmaker, ids)).get(
            DeliveryStatus.DELIVERED, 0
        )

        await wait_until_delivered(sessionmaker, ids, within=25, worker=worker)
        assert_each_once(await responses_by_key(fake_control, integration.survey_id), ids)
        print(
            f"\nFLUSHALL with {undelivered} of 40 undelivered: all delivered "
            f"{time.monotonic() - flushed_at:.2f} s later"
        )
        assert undelivered > 20  # the flush really did throw queued jobs away

    async def test_sigkill_with_deliveries_in_flight_loses_and_duplicates_nothing(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
        fake_control: httpx.AsyncClient,
        redis_url: str,
        workers: Workers,
    ) -> None:
        integration = await enabled_integration(client, admin)
        await hang_after_storing_responses(fake_control, seconds=2.0)
        first = workers.start()
        ids = await plan_deliveries(sessionmaker, integration.organization_id, 30)
        await enqueue(redis_url, sessionmaker, ids)
        # At least 20 POSTs reached Qualtrics (stored there) and wait for their answers.
        await stored_at_least(fake_control, integration.survey_id, 20, explain=first.log)

        first.signal(signal.SIGKILL)
        first.wait(timeout=5)
        killed_at = time.monotonic()
        stored = len(await responses_by_key(fake_control, integration.survey_id))
        recorded = (await count_by_status(sessionmaker, ids)).get(DeliveryStatus.DELIVERED, 0)
        claimed = await in_flight(sessionmaker, ids)
        await fake_control.delete("/_fake/faults")
        second = workers.start()

        took = await wait_until_delivered(sessionmaker, ids, within=40, worker=second)
        recovered = time.monotonic() - killed_at
        assert_each_once(await responses_by_key(fake_control, integration.survey_id), ids)
        repeats = await response_posts(fake_control, integration.survey_id) - len(ids)
        # Each response stored before the kill but never recorded was POSTed again, with the
        # same Idempotency-Key, and Qualtrics answered the first response instead of a new one.
        assert repeats >= stored - recorded >= 20
        print(
            f"\nSIGKILL with {claimed} claimed, {stored} POSTs stored at Qualtrics "
            f"({recorded} recorded): all 30 delivered {recovered:.2f} s after the kill "
            f"({took:.2f} s after the new worker was ready); {repeats} repeated POSTs "
            f"absorbed by the Idempotency-Key, 0 duplicate responses"
        )

    async def test_worker_survives_a_redis_restart(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
        fake_control: httpx.AsyncClient,
        redis_url: str,
        redis_server: RedisServer,
        workers: Workers,
    ) -> None:
        integration = await enabled_integration(client, admin)
        worker = workers.start(sweep_stale_after="1")
        before = await plan_deliveries(sessionmaker, integration.organization_id, 10)
        await enqueue(redis_url, sessionmaker, before)
        await wait_until_delivered(sessionmaker, before, within=15, worker=worker)

        redis_server.stop()
        stopped_at = time.monotonic()
        # Written while Redis is down: the enqueue fails (logged), the rows wait in the database.
        during = await plan_deliveries(sessionmaker, integration.organization_id, 10)
        await enqueue(redis_url, sessionmaker, during)
        await asyncio.sleep(1.0)
        redis_server.start()

        await wait_until_delivered(sessionmaker, during, within=25, worker=worker)
        resumed = time.monotonic() - stopped_at
        # Still the same process: the supervisor started a new arq worker inside it.
        assert worker.process is not None
        assert worker.process.poll() is None
        log = worker.log()
        assert "the worker lost its connection: ConnectionError" in log
        assert "starting a new worker" in log
        assert_each_once(
            await responses_by_key(fake_control, integration.survey_id), before + during
        )
        print(f"\nRedis down for ~1 s: delivery resumed, all delivered {resumed:.2f} s after")
