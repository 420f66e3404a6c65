"""Intake's one-round-trip enqueue writes exactly what `ArqRedis.enqueue_job` would."""

import uuid

from arq.jobs import Job, JobStatus, serialize_job
from arq.utils import timestamp_ms
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.delivery.arq_batch import BatchEnqueuer
from service.delivery.dispatch import QueuedDelivery, job_id
from service.delivery.queue import (
    DELIVERY_SEND,
    ArqDispatcher,
    arq_redis,
    delivery_job_bytes,
    job_serializer,
)


async def test_jobs_are_arq_jobs_and_unique_by_id(redis_url: str) -> None:
    redis = arq_redis(redis_url)
    try:
        enqueue = BatchEnqueuer(redis)
        enqueued_at = timestamp_ms()
        jobs = [
            (
                f"delivery.send:{n}",
                serialize_job(
                    DELIVERY_SEND,
                    (f"id-{n}",),
                    {"request_id": f"r{n}"},
                    None,
                    enqueued_at,
                    serializer=redis.job_serializer,
                ),
            )
            for n in range(3)
        ]
        assert await enqueue(jobs, enqueued_at) == 3
        # Queued already: nothing new, by our script and by arq's own enqueue alike.
        assert await enqueue(jobs[:2], enqueued_at) == 0
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


@settings(max_examples=200, deadline=None)
@given(
    request_id=st.none() | st.text(max_size=80),
    enqueued_at=st.integers(min_value=0, max_value=2**53),
)
def test_delivery_jobs_are_the_bytes_arq_writes(request_id: str | None, enqueued_at: int) -> None:
    """The fast path for delivery jobs writes what `serialize_job` writes with our serializer
    (quotes, backslashes, control and non-ASCII characters in a request id included)."""
    delivery = QueuedDelivery(uuid.uuid4(), request_id)
    expected = serialize_job(
        DELIVERY_SEND,
        (str(delivery.delivery_id),),
        {"request_id": request_id},
        None,
        enqueued_at,
        serializer=job_serializer,
    )
    assert delivery_job_bytes(delivery, enqueued_at) == expected


async def test_the_dispatcher_enqueues_delivery_jobs_arq_reads(
    redis_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    dispatcher = ArqDispatcher.from_url(redis_url, sessionmaker)
    delivery = QueuedDelivery(uuid.uuid4(), 'req-"quoted"')
    try:
        await dispatcher.enqueue_many([delivery])
        redis = arq_redis(redis_url)
        try:
            info = await Job(
                job_id(delivery.delivery_id), redis, _deserializer=redis.job_deserializer
            ).info()
        finally:
            await redis.aclose(close_connection_pool=True)
    finally:
        await dispatcher.aclose()
    assert info is not None
    assert (info.function, info.args, info.kwargs) == (
        DELIVERY_SEND,
        [str(delivery.delivery_id)],
        {"request_id": 'req-"quoted"'},
    )
