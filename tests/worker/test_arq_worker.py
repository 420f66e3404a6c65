"""`DeliveryWorker` against our own redis-server: slots kept busy, one-round-trip pickup, jobs
finished in shared transactions, SIGTERM still stops the picking, and arq's per-job log lines
dropped."""

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest
from arq.connections import ArqRedis
from arq.constants import (
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.typing import WorkerCoroutine
from arq.worker import Worker, func

from service.delivery.queue import arq_redis, job_deserializer, job_serializer
from service.worker.arq_worker import DeliveryWorker, create_worker, quiet_job_lines

QUEUE = "arq:queue"


@pytest.fixture
async def pool(redis_url: str) -> AsyncIterator[ArqRedis]:
    redis = arq_redis(redis_url)
    yield redis
    await redis.aclose(close_connection_pool=True)


class Jobs:
    """A job function that records when each job started and can be held."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started: dict[str, float] = {}
        self.running = 0
        self.most = 0

    async def run(self, ctx: dict[str, Any], name: str) -> str:
        self.started[name] = time.monotonic()
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.running -= 1
        return name


def worker_for(cls: type[Worker], pool: ArqRedis, jobs: Jobs, **options: Any) -> Worker:
    settings: dict[str, Any] = {
        "functions": [func(cast(WorkerCoroutine, jobs.run), name="job", keep_result=0)],
        "redis_pool": pool,
        "handle_signals": False,
        "keep_result": 0,
        "job_serializer": job_serializer,
        "job_deserializer": job_deserializer,
        **options,
    }
    return cls(**settings)


async def enqueue(pool: ArqRedis, *names: str) -> None:
    for name in names:
        assert await pool.enqueue_job("job", name, _job_id=name) is not None


async def until(check: Callable[[], bool], *, within: float) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.01)


async def stopped(worker: Worker, running: "asyncio.Task[None]") -> None:
    """Cancel the worker and its jobs (the pool is the fixture's to close)."""
    tasks = [running, *worker.tasks.values()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class TestSlots:
    async def test_a_freed_slot_takes_the_next_job_at_once(self, pool: ArqRedis) -> None:
        """arq itself waits out poll_delay (here 5 s) once every slot is taken."""
        jobs = Jobs(seconds=0.3)
        await enqueue(pool, "a", "b", "c")
        worker = worker_for(DeliveryWorker, pool, jobs, max_jobs=2, poll_delay=5)
        running = asyncio.create_task(worker.async_run())
        try:
            await until(lambda: len(jobs.started) == 3, within=4)
        finally:
            await stopped(worker, running)
        first = min(jobs.started["a"], jobs.started["b"])
        assert 0.25 < jobs.started["c"] - first < 2
        assert jobs.most == 2  # never more than max_jobs

    async def test_arq_alone_leaves_the_slot_idle(self, pool: ArqRedis) -> None:
        """The behaviour DeliveryWorker changes (if arq changes it, this says so)."""
        jobs = Jobs(seconds=0.3)
        await enqueue(pool, "a", "b", "c")
        worker = worker_for(Worker, pool, jobs, max_jobs=2, poll_delay=2)
        running = asyncio.create_task(worker.async_run())
        try:
            await until(lambda: len(jobs.started) == 3, within=6)
        finally:
            await stopped(worker, running)
        assert jobs.started["c"] - min(jobs.started["a"], jobs.started["b"]) > 1.5

    async def test_sigterm_stops_the_picking_while_waiting_for_a_slot(self, pool: ArqRedis) -> None:
        jobs = Jobs(seconds=0.5)
        await enqueue(pool, *(f"j{number}" for number in range(6)))
        worker = worker_for(
            DeliveryWorker, pool, jobs, max_jobs=2, poll_delay=5, job_completion_wait=5
        )
        running = asyncio.create_task(worker.async_run())
        try:
            await until(lambda: len(jobs.started) == 2, within=4)
            worker.handle_sig_wait_for_completion(signal.SIGTERM)
            await asyncio.sleep(1.2)  # the two finish; their slots must stay empty
        finally:
            await stopped(worker, running)
        assert len(jobs.started) == 2
        assert await pool.zcard(QUEUE) == 4


class TestPickup:
    async def test_a_job_another_worker_runs_is_left_alone(self, pool: ArqRedis) -> None:
        jobs = Jobs(seconds=0)
        await enqueue(pool, "mine", "theirs")
        await pool.psetex(in_progress_key_prefix + "theirs", 60_000, b"1")
        worker = worker_for(DeliveryWorker, pool, jobs, max_jobs=5, poll_delay=0.05)
        running = asyncio.create_task(worker.async_run())
        try:
            await until(lambda: "mine" in jobs.started, within=4)
            await asyncio.sleep(0.3)
        finally:
            await stopped(worker, running)
        assert set(jobs.started) == {"mine"}
        assert [member.decode() for member in await pool.zrange(QUEUE, 0, -1)] == ["theirs"]

    async def test_taking_marks_the_job_in_progress_once(self, pool: ArqRedis) -> None:
        await enqueue(pool, "job-1")
        worker = cast(DeliveryWorker, worker_for(DeliveryWorker, pool, Jobs(0)))
        assert await worker._take("job-1") is not None
        assert await pool.exists(in_progress_key_prefix + "job-1") == 1
        assert await worker._take("job-1") is None  # in progress now
        assert await worker._take("no-such-job") is None

    async def test_a_job_deferred_to_the_future_is_not_taken(self, pool: ArqRedis) -> None:
        await pool.enqueue_job("job", "later", _job_id="later", _defer_by=60)
        worker = cast(DeliveryWorker, worker_for(DeliveryWorker, pool, Jobs(0)))
        assert await worker._take("later") is None
        assert await pool.exists(in_progress_key_prefix + "later") == 0

    def test_create_worker_builds_a_delivery_worker(self) -> None:
        worker = create_worker(
            {"functions": [func(cast(WorkerCoroutine, Jobs(0).run), name="job")], "max_jobs": 7},
            handle_signals=False,
        )
        assert isinstance(worker, DeliveryWorker)
        assert worker.max_jobs == 7


class TestLogging:
    def test_only_the_per_job_lines_are_dropped(self, caplog: pytest.LogCaptureFixture) -> None:
        quiet_job_lines()
        quiet_job_lines()  # idempotent
        arq_logger = logging.getLogger("arq.worker")
        with caplog.at_level(logging.INFO, logger="arq.worker"):
            arq_logger.info("%6.2fs → %s(%s)%s", 0.1, "job", "x", "")
            arq_logger.info("%6.2fs ← %s ● %s", 0.1, "job", "ok")
            arq_logger.info("%6.2fs ↻ %s cancelled, will be run again", 0.1, "job")
            arq_logger.info("Starting worker for %d functions: %s", 1, "job")
        messages = [record.getMessage() for record in caplog.records]
        assert messages == [
            "  0.10s ↻ job cancelled, will be run again",
            "Starting worker for 1 functions: job",
        ]


class TestFinishing:
    """Jobs that end together share one transaction; Redis ends up exactly as arq leaves it."""

    async def keys_left(self, pool: ArqRedis, names: list[str]) -> list[str]:
        prefixes = (job_key_prefix, in_progress_key_prefix, retry_key_prefix, result_key_prefix)
        return [
            prefix + name
            for name in names
            for prefix in prefixes
            if await pool.exists(prefix + name)
        ]

    async def test_jobs_ending_together_share_a_transaction_and_leave_no_keys(
        self, pool: ArqRedis, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        names = [f"end-{n}" for n in range(40)]
        await enqueue(pool, *names)
        jobs = Jobs(seconds=0.05)
        worker = worker_for(DeliveryWorker, pool, jobs, max_jobs=40, poll_delay=0.01)
        assert isinstance(worker, DeliveryWorker)
        batches: list[int] = []
        finish_all = worker._finish_all

        async def counted(steps: list[Any]) -> list[bool]:
            batches.append(len(steps))
            return await finish_all(steps)

        monkeypatch.setattr(worker, "_finish_all", counted)
        running = asyncio.create_task(worker.async_run())
        try:
            await until(lambda: worker.jobs_complete == 40, within=10)
        finally:
            await stopped(worker, running)

        assert sum(batches) == 40
        assert len(batches) < 40, batches  # several ended in one transaction
        assert await pool.zcard(QUEUE) == 0
        assert await self.keys_left(pool, names) == []

    async def test_a_failed_batch_is_finished_job_by_job_as_arq_does(
        self, pool: ArqRedis, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        names = [f"alone-{n}" for n in range(5)]
        await enqueue(pool, *names)
        worker = worker_for(DeliveryWorker, pool, Jobs(seconds=0.01), max_jobs=5)
        alone: list[str] = []
        arqs_own = Worker.finish_job

        async def broken(steps: list[Any]) -> list[bool]:
            raise ConnectionError("Redis went away mid-batch")

        async def finish_job(self: Worker, job_id: str, *args: Any) -> None:
            alone.append(job_id)
            await arqs_own(self, job_id, *args)

        monkeypatch.setattr(worker, "_finish_all", broken)
        monkeypatch.setattr(Worker, "finish_job", finish_job)
        running = asyncio.create_task(worker.async_run())
        try:
            await until(lambda: worker.jobs_complete == 5, within=10)
        finally:
            await stopped(worker, running)

        assert sorted(alone) == sorted(names)
        assert await pool.zcard(QUEUE) == 0
        assert await self.keys_left(pool, names) == []
