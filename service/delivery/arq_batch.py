"""Enqueue many arq jobs in one Redis round trip, exactly as `ArqRedis.enqueue_job` would.

`enqueue_job` costs a WATCH/EXISTS/MULTI/EXEC exchange per job; intake commits tens of
deliveries per batch, and three round trips each would make Redis, not the database, the
limit of intake. This script does the same per job atomically inside Redis: skip a job whose
key or result key exists (arq's uniqueness by job id), else store the serialized job with
arq's default expiry and add it to the queue scored by its enqueue time. The job bytes are
the ones arq's `serialize_job` makes (intake writes delivery jobs directly, byte for byte:
service.delivery.queue), so the worker reads them like any other.
"""

from collections.abc import Sequence
from typing import Any

from arq.connections import ArqRedis
from arq.constants import default_queue_name, job_key_prefix, result_key_prefix

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


class BatchEnqueuer:
    """`await enqueuer(jobs, enqueued_at)`: enqueue every job not already queued (or kept as a
    result) in one round trip; answers how many were new. `jobs` are (job id, job bytes) pairs,
    the bytes as arq's `serialize_job` makes them with the pool's serializer for `enqueued_at`
    (`timestamp_ms()`), which also scores them in the queue."""

    def __init__(self, redis: ArqRedis, *, queue_name: str = default_queue_name) -> None:
        self._redis = redis
        self._queue_name = queue_name
        self._script = redis.register_script(_ENQUEUE_MANY)

    async def __call__(self, jobs: Sequence[tuple[str, bytes]], enqueued_at: int) -> int:
        if not jobs:
            return 0
        argv: list[Any] = [
            enqueued_at,
            self._redis.expires_extra_ms,
            job_key_prefix,
            result_key_prefix,
        ]
        for job_id, job in jobs:
            argv += (job_id, job)
        created: int = await self._script(keys=[self._queue_name], args=argv)
        return created
