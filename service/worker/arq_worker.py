"""arq's worker as `service worker` runs it: every job slot kept busy, each job taken in one
Redis round trip instead of four, finished in a transaction shared with others, and one log
line per delivery attempt instead of three.

**Slots.** arq 0.28's `start_jobs` stops as soon as all `max_jobs` slots are taken and looks
for work again only after `poll_delay`. Slots that free up meanwhile stay idle, so a deep queue
of I/O-bound jobs runs at about `max_jobs / (job time + poll_delay)`: measured here, 50 slots
of 50 ms jobs held 24 jobs on average (490 jobs/s). `DeliveryWorker` instead waits for the next
job to finish and starts the next one from the ids it read, at once (41 of 50 slots busy, 760
jobs/s); it goes back to arq's poll loop (heart beat, reaping finished tasks, reading the queue
again) when those ids are used up, or when no slot frees within `SLOT_WAIT`, and at once when
a SIGTERM stops it picking jobs. Ids of jobs this worker is running are skipped without asking
Redis.

**Pickup.** arq 0.28 takes each job with an optimistic transaction: `WATCH` the job's
in-progress key, `EXISTS` it, `ZSCORE` the job in the queue, then `MULTI PSETEX EXEC`, four
round trips one after another, in the loop that starts every job. `DeliveryWorker` does the
same check-and-mark in one Lua script, atomically (Redis runs a script alone, as the
transaction guaranteed):

- skip the job if its in-progress key exists (another worker runs it), or it is no longer in
  the queue, or not due yet (a score in the future: re-enqueued with a delay elsewhere);
- otherwise set the in-progress key with arq's own timeout and run the job, exactly as arq
  does after a successful `EXEC`.

**Finishing.** arq ends every job with a transaction of its own (delete its keys, remove it
from the queue). `finish_job` hands those to a group commit (service.kit.coalescer): jobs that
end while one transaction is in flight share the next, with one DEL and one ZREM for all of
them. The keys and the order of changes within a job are arq's; a failed batch is redone job
by job by arq's own `finish_job`.

Everything else (running, retrying, the health check, shutdown) is arq's. The
override is tied to arq 0.28.0, which the project pins; `tests/worker` and `tests/faults` run
the real thing (lost Redis, SIGKILLed workers, duplicate enqueues).

**Logging.** arq logs two INFO lines for every job (`→` when it starts, `←` when it ends).
The sender already logs one structured line per attempt with the delivery, integration,
outcome, status and duration, so `quiet_job_lines` drops arq's two; every other arq line
(start-up, retries, cancellations, failures, the health check) stays.
"""

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.utils import timestamp_ms, to_ms
from arq.worker import Worker, get_kwargs
from redis.commands.core import AsyncScript

from service.kit.coalescer import Coalescer

logger = logging.getLogger("arq.worker")

# Jobs whose end is recorded in one transaction at most.
FINISH_BATCH = 200

# The longest `start_jobs` waits for a running job to finish before it lets arq's poll loop
# do its rounds (heart beat, reaping finished tasks) and read the queue again.
SLOT_WAIT = 1.0

# KEYS: the job's in-progress key, the queue. ARGV: job id, now (ms), in-progress timeout (ms).
# Returns the job's score when this worker may run it (the in-progress key is now set), else nil.
_PICK_UP = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return false end
redis.call('PSETEX', KEYS[1], ARGV[3], '1')
return score
"""


@dataclass(frozen=True, slots=True)
class _Finish:
    """The arguments of one `finish_job` call."""

    job_id: str
    finish: bool
    result_data: bytes | None
    result_timeout_s: float | None
    keep_result_forever: bool
    incr_score: int | None
    keep_in_progress: float | None


class DeliveryWorker(Worker):
    """`arq.worker.Worker` whose `start_jobs` keeps every slot busy and takes each job in one
    round trip (see the module docstring)."""

    _pick_up: AsyncScript | None = None
    _job_done: asyncio.Event | None = None
    _finishes: "Coalescer[_Finish, bool] | None" = None

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        """arq's end-of-job bookkeeping, for every job that ends meanwhile in one transaction
        (see the module docstring); a batch that fails is done job by job, as arq does it."""
        arguments = (
            job_id,
            finish,
            result_data,
            result_timeout_s,
            keep_result_forever,
            incr_score,
            keep_in_progress,
        )
        if self._finishes is None:
            self._finishes = Coalescer(self._finish_all, FINISH_BATCH, name="arq-finish")
        if await self._finishes.submit(_Finish(*arguments)) is None:
            await super().finish_job(*arguments)

    async def _finish_all(self, steps: list["_Finish"]) -> list[bool]:
        """What arq 0.28's `finish_job` does for each, in one MULTI/EXEC."""
        async with self.pool.pipeline(transaction=True) as transaction:
            delete_keys: list[str] = []
            finished: list[str] = []
            for step in steps:
                in_progress_key = in_progress_key_prefix + step.job_id
                if step.keep_in_progress is None:
                    delete_keys.append(in_progress_key)
                else:
                    transaction.pexpire(in_progress_key, to_ms(step.keep_in_progress))
                if step.finish:
                    if step.result_data:
                        expire = None if step.keep_result_forever else step.result_timeout_s
                        transaction.set(
                            result_key_prefix + step.job_id, step.result_data, px=to_ms(expire)
                        )
                    delete_keys += [retry_key_prefix + step.job_id, job_key_prefix + step.job_id]
                    finished.append(step.job_id)
                elif step.incr_score:
                    transaction.zincrby(self.queue_name, step.incr_score, step.job_id)
            if finished:
                transaction.zrem(abort_jobs_ss, *finished)
                transaction.zrem(self.queue_name, *finished)
            if delete_keys:
                transaction.delete(*delete_keys)
            await transaction.execute()
        return [True] * len(steps)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """For each job id: wait for a free slot, take the job if nobody runs it, start it."""
        for job_id_b in job_ids:
            if not self.allow_pick_jobs:
                return  # SIGTERM: finish what runs, start nothing more
            job_id = job_id_b.decode()
            running = self.tasks.get(job_id)
            if running is not None and not running.done():
                continue  # this worker runs it: in progress, no need to ask Redis
            # arq's semaphore has max_jobs + 1 permits: with every slot taken, this one is the
            # spare, held while waiting for a running job to finish.
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs and not await self._slot_freed():
                self.sem.release()
                return
            if not self.allow_pick_jobs:  # the signal came while waiting for a slot
                self.sem.release()
                return
            self.job_counter = self.job_counter + 1
            try:
                score = await self._take(job_id)
            except BaseException:
                self._release_sem_dec_counter_on_complete()
                raise
            if score is None:
                # Running elsewhere, finished and removed, or re-enqueued with a delay.
                self._release_sem_dec_counter_on_complete()
                logger.debug("job %s already running elsewhere", job_id)
                continue
            task = self.loop.create_task(self.run_job(job_id, score))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

    async def _slot_freed(self) -> bool:
        """Wait (at most SLOT_WAIT) until a running job finishes; whether a slot is free."""
        if self._job_done is None:
            self._job_done = asyncio.Event()
        deadline = asyncio.get_running_loop().time() + SLOT_WAIT
        while self.job_counter >= self.max_jobs:
            self._job_done.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            try:
                async with asyncio.timeout(remaining):
                    await self._job_done.wait()
            except TimeoutError:
                return False
        return True

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        if self._job_done is not None:
            self._job_done.set()

    async def _take(self, job_id: str) -> int | None:
        if self._pick_up is None:
            self._pick_up = self.pool.register_script(_PICK_UP)
        score = await self._pick_up(
            keys=[in_progress_key_prefix + job_id, self.queue_name],
            args=[job_id, timestamp_ms(), int(self.in_progress_timeout_s * 1000)],
            client=self.pool,
        )
        return None if score is None else int(float(score))


# The format strings of arq 0.28's per-job start and success lines (arq/worker.py `run_job`).
_JOB_LINES = frozenset({"%6.2fs → %s(%s)%s", "%6.2fs ← %s ● %s"})


def quiet_job_lines() -> None:
    """Drop arq's per-job start and success lines (idempotent).

    Before a record is made, not by a filter after: two records per delivery that nobody
    reads are a measurable share of a worker's CPU."""
    info = logger.info
    if getattr(info, "quiet_job_lines", False):
        return

    def quiet_info(msg: object, *args: Any, **kwargs: Any) -> None:
        if msg not in _JOB_LINES:
            info(msg, *args, **kwargs)

    quiet_info.quiet_job_lines = True  # type: ignore[attr-defined]
    logger.info = quiet_info  # type: ignore[method-assign]


def create_worker(settings: dict[str, Any], **overrides: Any) -> Worker:
    """Like `arq.worker.create_worker`, with the one-round-trip pickup."""
    return DeliveryWorker(**{**get_kwargs(settings), **overrides})
