"""`service worker`: an arq worker kept alive across Redis restarts.

An arq 0.28.0 worker does not survive its Redis going away: the next poll raises
`redis.exceptions.ConnectionError` out of `Worker.main()` and the process ends (arq #435, #498;
reliability-facts §0 item 5, measured). Jobs queued in a Redis without persistence are gone
too. So this module runs the worker in a loop:

1. build an arq `Worker` from `worker_settings(settings)` (with the one-round-trip job pickup
   of `service.worker.arq_worker`) and run it;
2. when it dies of a Redis connection error (or a timeout, or an OS-level socket error, which
   is also how a database that refuses connections at startup shows), let the jobs it was
   running finish (bounded by `job_completion_wait`), close it, wait with backoff
   (0.5 s doubling to 5 s; reset once a worker ran for a minute) and go to 1. A new worker
   connects with arq's own retries, runs `startup` again and so restarts the sweeper, which
   re-enqueues every due delivery the restart lost. Delivery resumes with no manual step.
3. SIGTERM or SIGINT stops the loop: the running worker stops taking jobs, the ones in flight
   get `job_completion_wait` to finish, then it closes and the command exits 0. A second
   signal cancels what is still running (the sender's claim and the Idempotency-Key make
   that safe: the sweeper offers the delivery again, and Qualtrics dedupes the key).

Anything else (an old schema, a bug) ends the command with an error. The container's
`restart: unless-stopped` (compose.yaml) is the second layer for that and for a crashed process.
"""

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from typing import Any, cast

from arq.worker import Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.config import Settings
from service.worker.arq_worker import create_worker, quiet_job_lines
from service.worker.settings import shutdown, worker_settings

logger = logging.getLogger(__name__)

# What a Redis restart, failover or network cut looks like from inside the worker.
CONNECTION_LOST = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 5.0
# A worker that ran this long was healthy: the next failure starts the backoff afresh.
HEALTHY_RUN = 60.0


class Supervisor:
    def __init__(self, settings: Settings, **worker_overrides: Any) -> None:
        self._settings = settings
        self._overrides = worker_overrides
        self._stop = asyncio.Event()
        self._worker: Worker | None = None
        self._signals = 0
        self.restarts = 0

    def request_stop(self, signum: signal.Signals = signal.SIGTERM) -> None:
        """First call: finish in-flight jobs and exit. Second: cancel them and exit."""
        self._signals += 1
        self._stop.set()
        worker = self._worker
        if worker is None:
            return
        if self._signals == 1:
            logger.info("%s: finishing the jobs in flight, then stopping", signum.name)
            worker.handle_sig_wait_for_completion(signum)
        else:
            logger.info("%s again: cancelling the jobs in flight", signum.name)
            worker.handle_sig(signum)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop, signum)

    async def run(self) -> None:
        backoff = INITIAL_BACKOFF
        while not self._stop.is_set():
            started = time.monotonic()
            lost = await self._run_one()
            if not lost or self._stop.is_set():
                break
            if time.monotonic() - started >= HEALTHY_RUN:
                backoff = INITIAL_BACKOFF
            self.restarts += 1
            logger.warning("starting a new worker in %.1f s", backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
        logger.info("worker stopped")

    async def _run_one(self) -> bool:
        """Run one arq worker until it stops; True when it died of a lost connection."""
        options = cast(dict[str, Any], worker_settings(self._settings))
        worker = create_worker(options, **self._overrides)
        self._worker = worker
        lost = False
        try:
            await worker.async_run()
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we were cancelled, not the worker stopped by a signal
        except (*CONNECTION_LOST, WatchError) as exc:
            # Mostly Redis; a database that refuses connections at startup lands here too,
            # and waiting for it is just as right. redis-py reports a connection that died
            # while arq's job pickup was WATCHing a key as a WatchError raised while handling
            # the ConnectionError (tests/faults: Redis SIGKILLed mid-run): the same outage.
            if isinstance(exc, WatchError) and not isinstance(exc.__context__, CONNECTION_LOST):
                raise
            lost = True
            logger.warning("the worker lost its connection: %s: %s", type(exc).__name__, exc)
        finally:
            self._worker = None
            await self._close(worker, graceful=lost)
        return lost

    async def _close(self, worker: Worker, *, graceful: bool) -> None:
        if graceful:
            # Their Qualtrics calls do not need Redis; let them finish and record the result.
            running = [task for task in worker.tasks.values() if not task.done()]
            wait = self._settings.job_completion_wait.total_seconds()
            if running and wait > 0:
                await asyncio.wait(running, timeout=wait)
        try:
            # Cancels what still runs, awaits it, runs `shutdown`, closes the pool.
            await worker.close()
        except (RedisError, *CONNECTION_LOST):
            logger.debug("closing the worker without Redis", exc_info=True)
            pool = worker._pool  # arq keeps it private; close() stopped before closing it
            if pool is not None:
                await pool.aclose(close_connection_pool=True)
        finally:
            # Idempotent; runs here when close() stopped before arq's on_shutdown.
            await shutdown(worker.ctx)
            await asyncio.gather(*worker.tasks.values(), return_exceptions=True)


async def supervise(settings: Settings, **worker_overrides: Any) -> None:
    supervisor = Supervisor(settings, **worker_overrides)
    supervisor.install_signal_handlers()
    await supervisor.run()


def run_worker(settings: Settings) -> None:
    """The `service worker` command's body, on uvloop where it is installed (uvicorn's own
    choice for the api): a worker spends much of its CPU in the event loop, on about eight
    Redis, PostgreSQL and HTTP exchanges per delivery (measured on the 2-core machine, one
    worker, 50 jobs: 352 against 250 deliveries/s, medians of 4 alternating rounds)."""
    quiet_job_lines()
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(supervise(settings))


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (`uvicorn[standard]` brings it on Linux), else
    None: asyncio's own."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover (installed with uvicorn[standard])
        return None
    return uvloop.new_event_loop
