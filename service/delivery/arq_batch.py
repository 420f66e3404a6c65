"""Enqueue many arq jobs in one Redis round trip, exactly as `ArqRedis.enqueue_job` would.

`enqueue_job` costs a WATCH/EXISTS/MULTI/EXEC exchange per job; intake commits tens of
deliveries per batch, and three round trips each would make Redis, not the database, the
limit of intake. This script does the same per job atomically inside Redis: skip a job whose
key or result key exists (arq's uniqueness by job id), else store the serialized job with
arq's default expiry and add it to the queue scored by its enqueue time. The job bytes are
built by arq's own `serialize_job`, so the worker reads them like any other.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from arq.connections import ArqRedis
from arq.constants import default_queue_name, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms

# KEYS[1] = the queue; ARGV = enqueue time (ms), expiry (ms), arq's job and result key
# prefixes, then (job id, job bytes) pairs.
_ENQUEUE_MANY = """
local created = 0
local score = tonumber(ARGV[1])
for i = 5, #ARGV, 2 do
    local job_id = ARGV[i]
    local job_key = ARGV[3] .. job_id
    if redis.call('EXISTS', job_key, ARGV[4] .. job_id) == 0 then
        redis.call('PSETEX', job_key, ARGV[2], ARGV[i + 1])
        redis.call('ZADD', KEYS[1], score, job_id)
        created = created + 1
    end
end
return created
"""


Item = TypeVar("Item")
# (item, enqueue time in ms) -> the job's bytes, as arq's `serialize_job` would make them.
Serialize = Callable[[Item, int], bytes]


@dataclass(frozen=True, slots=True)
class JobSpec:
    job_id: str
    function: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class BatchEnqueuer:
    """`await enqueuer(jobs)`: enqueue every job not already queued (or kept as a result) in
    one round trip; answers how many were new."""

    def __init__(self, redis: ArqRedis, *, queue_name: str = default_queue_name) -> None:
        self._redis = redis
        self._queue_name = queue_name
        self._script = redis.register_script(_ENQUEUE_MANY)

    async def __call__(self, jobs: Sequence[JobSpec]) -> int:
        serializer = self._redis.job_serializer

        def serialized(job: JobSpec, enqueued_at: int) -> bytes:
            return serialize_job(
                job.function, job.args, job.kwargs, None, enqueued_at, serializer=serializer
            )

        return await self.serialized([(job.job_id, job, serialized) for job in jobs])

    async def serialized(self, jobs: Sequence[tuple[str, Item, Serialize[Item]]]) -> int:
        """The same, each job given as (job id, item, a function making its bytes from the item
        and the enqueue time): for callers that can write arq's bytes faster themselves."""
        if not jobs:
            return 0
        redis = self._redis
        enqueued_at = timestamp_ms()
        argv: list[Any] = [enqueued_at, redis.expires_extra_ms, job_key_prefix, result_key_prefix]
        for job_id, item, serialize in jobs:
            argv.append(job_id)
            argv.append(serialize(item, enqueued_at))
        created: int = await self._script(keys=[self._queue_name], args=argv)
        return created
