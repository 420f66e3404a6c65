"""(b) Redis killed with SIGKILL mid-run and started again: without persistence (the queue is
gone) and with AOF `everysec` (the queue survives). Either way nothing acknowledged is lost:
the database is the outbox and the sweeper enqueues again whatever is due."""

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import WatchError

from service.models import DeliveryStatus
from service.worker import supervisor as supervisor_module
from service.worker.supervisor import Supervisor
from tests.conftest import make_settings
from tests.faults.conftest import ScenarioFactory
from tests.worker.conftest import RedisServer, Workers, eventually

ARQ_QUEUE = "arq:queue"
UNUSED_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:1/unused"


class AofRedisServer(RedisServer):
    """Like the worker tests' redis-server, but with an append-only file in its own dir."""

    persistence = ("--appendonly", "yes", "--appendfsync", "everysec")


@pytest.fixture(params=["no_persistence", "aof_everysec"])
def redis_under_test(
    request: pytest.FixtureRequest, redis_server: RedisServer, tmp_path: Path
) -> Iterator[RedisServer]:
    if request.param == "no_persistence":
        yield redis_server  # the session's; `redis_url` starts it again for the next test
        return
    server = AofRedisServer(tmp_path / "aof")
    server.workdir.mkdir()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_under_test: RedisServer) -> str:
    """The worker tests' `redis_url`, for whichever redis-server this test kills."""
    if redis_under_test.process is None:
        redis_under_test.start()
    redis_under_test.flushall()
    return redis_under_test.url


def queued(server: RedisServer) -> int:
    with server.client() as client:
        return int(client.zcard(ARQ_QUEUE))


def sigkill(server: RedisServer) -> None:
    assert server.process is not None
    server.process.kill()
    server.process.wait(timeout=5)
    server.process = None


async def test_redis_sigkill_and_restart_loses_nothing(
    scenario: ScenarioFactory,
    fake_control: httpx.AsyncClient,
    workers: Workers,
    redis_under_test: RedisServer,
) -> None:
    persistent = isinstance(redis_under_test, AofRedisServer)
    run = await scenario("redis_sigkill_aof" if persistent else "redis_sigkill_no_persistence")
    await fake_control.patch("/_fake/config", json={"latency_seconds": 0.2})
    # Five at a time, so most jobs still wait in Redis when it dies.
    worker = workers.start(worker_max_jobs="5")
    await run.acknowledge(60)

    async def some_delivered() -> bool:
        return (await run.counts())[DeliveryStatus.DELIVERED] >= 10

    await eventually(some_delivered, within=15, explain=run.explain)
    queued_at_kill = queued(redis_under_test)
    sigkill(redis_under_test)
    # Redis is down: intake still answers 202 at once (the rows are the outbox); the enqueue
    # after the commit fails and is logged, and the sweeper enqueues them later.
    during = await run.send(10)
    assert [answer.status_code for _, answer, _ in during] == [202] * 10
    slowest_ack = max(took for _, _, took in during)
    await asyncio.sleep(1.0)  # Redis stays down a moment
    redis_under_test.start()
    run.mark("restart")
    queued_after_restart = queued(redis_under_test)

    await run.finish(
        {DeliveryStatus.DELIVERED: 70},
        within=40,
        queued_at_kill=queued_at_kill,
        queued_after_restart=queued_after_restart,
        slowest_ack_while_down=round(slowest_ack, 2),
    )
    assert worker.process is not None
    assert worker.process.poll() is None, "the worker process should survive the restart"
    assert "starting a new worker" in worker.log()
    assert queued_at_kill > 20  # the kill really did hit a queue full of jobs
    if persistent:
        assert queued_after_restart > 0, "AOF everysec should keep the queue"


# -- the race behind one of those kills, made deterministic -----------------------------------


class StubWorker:
    """Stands in for arq's Worker inside the supervisor: its run ends with `failure`, or runs
    until the supervisor stops it."""

    def __init__(self, failure: Exception | None, running: asyncio.Event) -> None:
        self.failure = failure
        self.running = running
        self.stopped = asyncio.Event()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.ctx: dict[str, object] = {"shut_down": True}  # built nothing, nothing to dispose
        self._pool = None

    async def async_run(self) -> None:
        if self.failure is not None:
            raise self.failure
        self.running.set()
        await self.stopped.wait()

    async def close(self) -> None:
        self.stopped.set()

    def handle_sig_wait_for_completion(self, signum: signal.Signals) -> None:
        self.stopped.set()

    def handle_sig(self, signum: signal.Signals) -> None:
        self.stopped.set()


def watch_error(*, from_connection: bool) -> WatchError:
    """What redis-py raises when the connection dies while arq's `start_jobs` WATCHes a key
    (seen when Redis was SIGKILLed under a busy worker): a WatchError raised while handling
    the ConnectionError. Without that context, a WatchError is a plain (unexpected) one."""
    if not from_connection:
        return WatchError("Watched variable changed.")
    error = WatchError("A ConnectionError occurred on while watching one or more keys")
    error.__context__ = RedisConnectionError("Error while reading from 127.0.0.1:6379 : (104,)")
    return error


async def test_supervisor_restarts_a_worker_whose_redis_died_during_watch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    running = asyncio.Event()
    stubs = iter(
        [StubWorker(watch_error(from_connection=True), running), StubWorker(None, running)]
    )
    monkeypatch.setattr(supervisor_module, "create_worker", lambda *_, **__: next(stubs))
    supervisor = Supervisor(make_settings(UNUSED_DATABASE, redis_url="redis://127.0.0.1:1/0"))
    run = asyncio.create_task(supervisor.run())
    async with asyncio.timeout(10):
        await running.wait()  # a new worker, in the same process
    supervisor.request_stop()
    await asyncio.wait_for(run, timeout=10)
    assert supervisor.restarts == 1

    # A WatchError that is not a lost connection is a bug, and still ends the command.
    monkeypatch.setattr(
        supervisor_module,
        "create_worker",
        lambda *_, **__: StubWorker(watch_error(from_connection=False), asyncio.Event()),
    )
    with pytest.raises(WatchError):
        await Supervisor(make_settings(UNUSED_DATABASE, redis_url="redis://127.0.0.1:1/0")).run()
