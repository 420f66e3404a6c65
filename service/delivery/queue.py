"""The dispatchers: how a due delivery reaches `send_delivery`, over arq or in this process.

`ArqDispatcher` (production, `CONNECTOR_REDIS_URL` set) enqueues one arq job per delivery:
`delivery.send(delivery_id, request_id=...)`, serialized as JSON (ids and primitives only, never
pickle), with the deterministic `_job_id = job_id(delivery_id)`, so enqueueing a delivery that
is already queued or running adds nothing. The task keeps no result (`keep_result=0`, see
`service.worker.tasks`): arq also drops an enqueue while a *result* of that job id is kept (an
hour by default), which would swallow the enqueue of a retry the database scheduled after an
earlier attempt finished. Nothing is lost by not keeping it: the sender claims the row before
it sends and sends with `Idempotency-Key` = the delivery id, so a double enqueue never becomes a
double response, and the attempt log lives in the database.

`InProcessDispatcher` (the embedded default, `service run` without Redis) is an asyncio queue
with N consumer tasks calling the same `send_delivery`, the same dedupe by delivery id, and its
own sweeper loop.

Both stamp `last_enqueued_at` on what they accepted (one UPDATE), so the sweeper leaves recently
enqueued deliveries alone. An enqueue that fails is logged, never raised: the rows are
committed, and the sweeper enqueues every due delivery that was not enqueued recently.
"""

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis
from arq.utils import timestamp_ms
from redis.asyncio import ConnectionPool
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.config import Settings
from service.delivery.arq_batch import BatchEnqueuer
from service.delivery.dispatch import QueuedDelivery, job_id
from service.delivery.sender import DeliveryContext, Outcome, send_delivery
from service.models import Delivery
from service.models.base import utc_now
from service.observability.context import request_id_var
from service.observability.metrics import DELIVERY_OUTCOMES
from service.worker.sweeper import Sweeper

logger = logging.getLogger(__name__)

DELIVERY_SEND = "delivery.send"
# Redis answers in well under a millisecond; anything slower is an outage, so fail fast and
# leave the delivery to the sweeper rather than hold up the caller.
REDIS_CONNECT_TIMEOUT = 2.0
REDIS_SOCKET_TIMEOUT = 5.0
# The embedded queue's bound: beyond it, deliveries wait in the database for the sweeper.
MAX_IN_PROCESS_QUEUE = 10_000


def _json_default(value: object) -> object:
    # A failed job's result is an exception; arq only stores results we do not keep, but a
    # readable text beats a serialization warning if one is ever kept.
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    raise TypeError(f"{type(value).__name__} is not JSON: jobs take ids and primitives")


def job_serializer(payload: dict[str, Any]) -> bytes:
    """arq's job (and result) envelope as compact JSON; set on the pool and the worker alike."""
    return json.dumps(payload, default=_json_default, separators=(",", ":")).encode()


def delivery_job_bytes(delivery: QueuedDelivery, enqueued_at: int) -> bytes:
    """A delivery job exactly as arq's `serialize_job` writes it with `job_serializer` (the
    same bytes: tests/worker/test_batch_enqueue.py), written directly: intake enqueues a job
    per delivery, and the generic path (a dict, then `json.dumps` with a default hook) was
    most of the enqueue's CPU."""
    request_id = json.dumps(delivery.request_id)
    return (
        f'{{"t":null,"f":"{DELIVERY_SEND}","a":["{delivery.delivery_id}"],'
        f'"k":{{"request_id":{request_id}}},"et":{enqueued_at}}}'
    ).encode()


def job_deserializer(data: bytes) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(data)
    return payload


def arq_redis(redis_url: str) -> ArqRedis:
    """An arq pool with the JSON serializer that connects on first use, so an api whose Redis
    is down still starts and accepts webhooks (the sweeper enqueues them later)."""
    pool = ConnectionPool.from_url(
        redis_url,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
        socket_timeout=REDIS_SOCKET_TIMEOUT,
    )
    return ArqRedis(pool, job_serializer=job_serializer, job_deserializer=job_deserializer)


async def mark_enqueued(
    sessionmaker: async_sessionmaker[AsyncSession],
    delivery_ids: Sequence[uuid.UUID],
    enqueued_at: datetime,
) -> None:
    """Stamp `last_enqueued_at` in one UPDATE; a failure only means an earlier re-enqueue."""
    if not delivery_ids:
        return
    try:
        async with sessionmaker.begin() as session:
            await session.execute(
                update(Delivery)
                .where(Delivery.id.in_(delivery_ids))
                # Bookkeeping, not a change of the delivery: `updated_at` keeps its value.
                .values(last_enqueued_at=enqueued_at, updated_at=Delivery.updated_at)
                .execution_options(synchronize_session=False)
            )
    except Exception:
        logger.warning(
            "could not record the enqueue of %d deliveries; the sweeper may enqueue them again",
            len(delivery_ids),
            exc_info=True,
        )


async def unmark_enqueued(
    sessionmaker: async_sessionmaker[AsyncSession], delivery_ids: Sequence[uuid.UUID]
) -> None:
    """Clear the `last_enqueued_at` intake stamped (optimistically, in the deliveries' own
    INSERT) on deliveries that could not be enqueued: the next sweep takes them. If this fails
    too, they are enqueued once the stamp is `stale_enqueue_after` old."""
    if not delivery_ids:
        return
    try:
        async with sessionmaker.begin() as session:
            await session.execute(
                update(Delivery)
                .where(Delivery.id.in_(delivery_ids))
                .values(last_enqueued_at=None, updated_at=Delivery.updated_at)
                .execution_options(synchronize_session=False)
            )
    except Exception:
        logger.warning(
            "could not clear the enqueue stamp of %d deliveries; the sweeper takes them once "
            "it is stale",
            len(delivery_ids),
            exc_info=True,
        )


async def run_delivery(
    context: DeliveryContext, delivery_id: uuid.UUID, *, request_id: str | None = None
) -> Outcome:
    """One job, from either dispatcher: the webhook's request id is in every log line it
    writes, and its outcome is counted."""
    token = request_id_var.set(request_id)
    try:
        outcome = await send_delivery(context, delivery_id, request_id=request_id)
    finally:
        request_id_var.reset(token)
    DELIVERY_OUTCOMES.labels(outcome.value).inc()
    return outcome


class ArqDispatcher:
    """Enqueues deliveries as arq jobs (see the module docstring)."""

    def __init__(
        self,
        redis: ArqRedis,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        clock: Callable[[], datetime] = utc_now,
        owns_redis: bool = False,
    ) -> None:
        self._redis = redis
        self._sessionmaker = sessionmaker
        self._clock = clock
        self._owns_redis = owns_redis
        self._enqueue_batch = BatchEnqueuer(redis)

    @classmethod
    def from_url(
        cls, redis_url: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> "ArqDispatcher":
        return cls(arq_redis(redis_url), sessionmaker, owns_redis=True)

    async def enqueue(
        self, delivery_ids: Sequence[uuid.UUID], *, request_id: str | None = None
    ) -> None:
        await self.submit(delivery_ids, request_id=request_id)

    async def submit(
        self, delivery_ids: Sequence[uuid.UUID], *, request_id: str | None = None
    ) -> int:
        """Enqueue in order; answer how many are now queued (new, or queued already)."""
        if not delivery_ids:
            return 0
        # Taken before the first enqueue: a worker may finish and reschedule the delivery
        # before the stamp is written, and its next attempt must still look un-enqueued.
        enqueued_at = self._clock()
        accepted: list[uuid.UUID] = []
        created = 0
        try:
            for delivery_id in delivery_ids:
                job = await self._redis.enqueue_job(
                    DELIVERY_SEND,
                    str(delivery_id),
                    request_id=request_id,
                    _job_id=job_id(delivery_id),
                )
                accepted.append(delivery_id)
                created += job is not None
        except Exception:
            # Redis is down or failing: stop here rather than wait out a timeout per delivery.
            logger.warning(
                "enqueued %d of %d deliveries; the sweeper will enqueue the rest",
                len(accepted),
                len(delivery_ids),
                exc_info=True,
            )
        if accepted:
            logger.debug(
                "enqueued %d deliveries (%d were queued already)", created, len(accepted) - created
            )
        await mark_enqueued(self._sessionmaker, accepted, enqueued_at)
        return len(accepted)

    async def enqueue_many(self, deliveries: Sequence[QueuedDelivery]) -> None:
        """One intake batch's deliveries in one Redis round trip (service.delivery.arq_batch)."""
        if not deliveries:
            return
        enqueued_at = timestamp_ms()
        jobs = [
            (job_id(delivery.delivery_id), delivery_job_bytes(delivery, enqueued_at))
            for delivery in deliveries
        ]
        try:
            await self._enqueue_batch(jobs, enqueued_at)
        except Exception:
            logger.warning(
                "could not enqueue %d deliveries; the sweeper will enqueue them",
                len(deliveries),
                exc_info=True,
            )
            await unmark_enqueued(
                self._sessionmaker, [delivery.delivery_id for delivery in deliveries]
            )

    async def aclose(self) -> None:
        if self._owns_redis:
            await self._redis.aclose(close_connection_pool=True)


class InProcessDispatcher:
    """The embedded default's queue: consumer tasks in this process, plus the sweeper loop.

    `context` is called for every delivery, so it always sees the process's current gateway
    (tests replace `app.state.qualtrics`); building the small frozen context costs nothing.
    Stopping lets sends in progress finish (up to `job_completion_wait`); queued deliveries
    stay `pending` in the database, and the first sweep after the next start enqueues them all.
    """

    def __init__(
        self,
        context: Callable[[], DeliveryContext],
        *,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._context = context
        self._sessionmaker = sessionmaker
        self._clock = clock
        self._consumers = settings.embedded_workers
        self._completion_wait = settings.job_completion_wait.total_seconds()
        self._queue: asyncio.Queue[tuple[uuid.UUID, str | None]] = asyncio.Queue(
            MAX_IN_PROCESS_QUEUE
        )
        # Queued or being sent: enqueueing one of these adds nothing, as with arq's job ids.
        self._known: set[uuid.UUID] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[None]] = set()
        self._closing = False
        self.sweeper = Sweeper(
            engine,
            self,
            interval=settings.sweeper_interval,
            stale_after=settings.stale_enqueue_after,
            batch_size=settings.sweep_batch_size,
            clock=clock,
            # Nothing can be queued in this process yet: the first sweep takes every due row.
            fresh_start=True,
        )

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._consume(), name=f"delivery-consumer-{number}")
            for number in range(self._consumers)
        ]
        self.sweeper.start()

    async def enqueue(
        self, delivery_ids: Sequence[uuid.UUID], *, request_id: str | None = None
    ) -> None:
        await self.submit(delivery_ids, request_id=request_id)

    async def submit(
        self, delivery_ids: Sequence[uuid.UUID], *, request_id: str | None = None
    ) -> int:
        enqueued_at = self._clock()
        accepted = self._accept(delivery_ids, request_id)
        await mark_enqueued(self._sessionmaker, accepted, enqueued_at)
        return len(accepted)

    def _accept(self, delivery_ids: Sequence[uuid.UUID], request_id: str | None) -> list[uuid.UUID]:
        """Queue what is not queued yet, in order, until the queue is full."""
        accepted: list[uuid.UUID] = []
        for delivery_id in delivery_ids:
            if delivery_id not in self._known:
                if self._closing or self._queue.full():
                    break
                self._known.add(delivery_id)
                self._queue.put_nowait((delivery_id, request_id))
            accepted.append(delivery_id)
        return accepted

    async def enqueue_many(self, deliveries: Sequence[QueuedDelivery]) -> None:
        by_request: dict[str | None, list[uuid.UUID]] = {}
        for delivery in deliveries:
            by_request.setdefault(delivery.request_id, []).append(delivery.delivery_id)
        accepted: set[uuid.UUID] = set()
        for request_id, delivery_ids in by_request.items():
            accepted.update(self._accept(delivery_ids, request_id))
        refused = [d.delivery_id for d in deliveries if d.delivery_id not in accepted]
        await unmark_enqueued(self._sessionmaker, refused)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def _consume(self) -> None:
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 (always inside a task)
        while not self._closing:
            delivery_id, request_id = await self._queue.get()
            self._busy.add(task)
            try:
                outcome = await run_delivery(self._context(), delivery_id, request_id=request_id)
                logger.debug("delivery %s: %s", delivery_id, outcome)
            except Exception:
                # The sender records Qualtrics errors itself; this is the database or a bug.
                # The row stays due, so the sweeper offers it again.
                logger.exception("delivery %s: the attempt failed", delivery_id)
            finally:
                self._busy.discard(task)
                self._known.discard(delivery_id)
                self._queue.task_done()

    async def aclose(self) -> None:
        """Stop taking work; let sends in progress finish (bounded), then stop the tasks."""
        self._closing = True
        await self.sweeper.stop()
        idle = [task for task in self._tasks if task not in self._busy]
        for task in idle:
            task.cancel()
        busy = [task for task in self._tasks if task in self._busy]
        if busy:
            _, late = await asyncio.wait(busy, timeout=self._completion_wait)
            for task in late:
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
