"""Intake's one-round-trip enqueue writes exactly what `ArqRedis.enqueue_job` would."""

from arq.jobs import Job, JobStatus

from service.delivery.arq_batch import BatchEnqueuer, JobSpec
from service.delivery.queue import DELIVERY_SEND, arq_redis


async def test_jobs_are_arq_jobs_and_unique_by_id(redis_url: str) -> None:
    redis = arq_redis(redis_url)
    try:
        enqueue = BatchEnqueuer(redis)
        jobs = [
            JobSpec(f"delivery.send:{n}", DELIVERY_SEND, (f"id-{n}",), {"request_id": f"r{n}"})
            for n in range(3)
        ]
        assert await enqueue(jobs) == 3
        # Queued already: nothing new, by our script and by arq's own enqueue alike.
        assert await enqueue(jobs[:2]) == 0
        assert await redis.enqueue_job(DELIVERY_SEND, "id-0", _job_id="delivery.send:0") is None

        info = await Job("delivery.send:1", redis, _deserializer=redis.job_deserializer).info()
        assert info is not None
        # JSON has no tuples: the args read back as a list, as with arq's own enqueue_job.
        assert (info.function, info.args, info.kwargs) == (
            DELIVERY_SEND,
            ["id-1"],
            {"request_id": "r1"},
        )
        assert await Job("delivery.send:2", redis).status() is JobStatus.queued
        assert await redis.zcard("arq:queue") == 3
        ttl = await redis.pttl("arq:job:delivery.send:0")
        assert 0 < ttl <= redis.expires_extra_ms  # arq's default expiry
    finally:
        await redis.aclose(close_connection_pool=True)
