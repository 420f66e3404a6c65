"""The arq worker's settings and its process resources, built once at startup.

Tuned for I/O-bound deliveries (reliability-facts §3.3, §3.4):

- `poll_delay` 50 ms, not arq's 0.5 s: a full worker only looks for work again on the next
  poll, so throughput is about max_jobs / (latency + poll_delay).
- `max_jobs` 50: each job mostly waits on Qualtrics; the shared rate limiter, not the worker
  count, decides how fast a brand is called.
- `job_timeout` 60 s: one Qualtrics call's deadline (45 s) plus a margin. arq holds the jobs of a
  SIGKILLed worker for job_timeout + 10 s before another worker runs them again (not 310 s);
  the sender's claim on their rows lasts job_timeout + 15 s, after which the sweeper offers
  them again (measured: 30 deliveries of a killed worker all sent ~18.5 s after the kill with
  job_timeout 3 s; none twice).
- `max_tries` far above anything reachable: the task never raises `Retry` for Qualtrics errors
  (the sender reschedules in the database); arq's try counter only grows when a job is cut
  short (worker killed, cancelled), and even an arq give-up loses nothing, because the row
  stays `pending` and the sweeper enqueues it again.
- `keep_result` 0 (see `service.delivery.queue`), JSON (de)serializer on the worker like the pool.
- `job_completion_wait`: on SIGTERM the worker stops taking jobs and lets the ones in flight
  finish (the HTTP deadline, 45 s, fits in the default 50 s) before cancelling the rest.

`startup` builds, once per worker: the engine and sessionmaker (refusing an old schema), one
Redis client for the token cache and the rate limiter, one `QualtricsGateway` (a connection
per job, in aiohttp's pool: `service.qualtrics.transport`), the `RedisRateLimiter`, the
`DeliveryContext` with its `DeliveryBatches` on PostgreSQL (concurrent jobs claim and record
in shared statements: `service.delivery.sender`), and the sweeper loop; `shutdown` stops and
disposes them (the batches' last statements commit first), and may be called twice.
"""

import logging
from typing import Any, TypedDict, cast

from arq.connections import RedisSettings
from arq.worker import Function
from redis.asyncio import Redis

from service.config import Settings
from service.connections.gateway import QualtricsGateway
from service.db import create_engine, create_sessionmaker, ensure_schema_current
from service.delivery.batches import DeliveryBatches
from service.delivery.health_checks import HealthCheckLoop
from service.delivery.queue import ArqDispatcher, job_deserializer, job_serializer
from service.delivery.ratelimit import RateLimitConfig, RedisRateLimiter
from service.delivery.sender import DeliveryContext
from service.kit.crypto import SecretBox
from service.kit.gc_tuning import freeze_startup_heap
from service.qualtrics import RedisTokenCache, create_http_client
from service.worker.context import WorkerContext
from service.worker.sweeper import Sweeper
from service.worker.tasks import MAX_TRIES, delivery_send

logger = logging.getLogger(__name__)


class WorkerSettings(TypedDict):
    """The keyword arguments of `arq.worker.Worker` we set (`arq.worker.create_worker` takes it)."""

    functions: list[Function]
    redis_settings: RedisSettings
    job_serializer: Any
    job_deserializer: Any
    max_jobs: int
    poll_delay: float
    job_timeout: float
    keep_result: float
    max_tries: int
    job_completion_wait: float
    health_check_interval: float
    handle_signals: bool
    on_startup: Any
    on_shutdown: Any
    ctx: dict[str, Any]


def rate_limit_config(settings: Settings) -> RateLimitConfig:
    """The per-brand limit every worker shares (the embedded default uses it in memory)."""
    return RateLimitConfig(
        rate_per_second=settings.qualtrics_rate_per_second,
        burst=settings.qualtrics_burst,
        max_concurrency=settings.qualtrics_max_concurrency,
        max_wait=settings.qualtrics_rate_max_wait.total_seconds(),
        # A slot held by a killed worker frees itself once no job of it can still be running.
        slot_ttl=settings.job_timeout.total_seconds() + 10,
    )


def redis_settings(redis_url: str) -> RedisSettings:
    return RedisSettings.from_dsn(redis_url)


async def startup(raw: dict[str, Any]) -> None:
    ctx = cast(WorkerContext, raw)
    settings = ctx["settings"]
    ctx["engine"] = engine = create_engine(settings.database_url)
    # A worker on an old schema would write rows the new code cannot read (or fail on
    # missing columns): refuse, as the api does. Raises SchemaOutOfDateError.
    await ensure_schema_current(engine)
    ctx["sessionmaker"] = sessionmaker = create_sessionmaker(engine)
    ctx["cache_redis"] = cache_redis = Redis.from_url(settings.redis_url)
    box = SecretBox(settings.fernet_keys)
    ctx["gateway"] = gateway = QualtricsGateway(
        base_url_template=settings.qualtrics_base_url,
        box=box,
        # A connection for every job (one request each).
        http=create_http_client(max_connections=settings.worker_max_jobs),
        # Cached tokens are bearer credentials: encrypted at rest in Redis.
        token_cache=RedisTokenCache(cache_redis, cipher=box),
    )
    ctx["limiter"] = limiter = RedisRateLimiter(cache_redis, rate_limit_config(settings))
    ctx["delivery"] = DeliveryContext(
        sessionmaker=sessionmaker,
        gateway=gateway,
        limiter=limiter,
        settings=settings,
        # Concurrent jobs claim and record in shared transactions (PostgreSQL only).
        batches=DeliveryBatches(engine) if engine.dialect.name == "postgresql" else None,
    )
    ctx["sweeper"] = sweeper = Sweeper(
        engine,
        ArqDispatcher(ctx["redis"], sessionmaker),
        interval=settings.sweeper_interval,
        stale_after=settings.stale_enqueue_after,
        batch_size=settings.sweep_batch_size,
    )
    sweeper.start()
    ctx["health_checks"] = health_checks = HealthCheckLoop(
        sessionmaker,
        gateway,
        interval=settings.integration_health_check_interval.total_seconds(),
        redis=cache_redis,
    )
    health_checks.start()
    freeze_startup_heap()
    logger.info(
        "worker ready: max_jobs=%d poll_delay=%.3fs job_timeout=%.0fs sweeper every %.1fs",
        settings.worker_max_jobs,
        settings.worker_poll_delay.total_seconds(),
        settings.job_timeout.total_seconds(),
        settings.sweeper_interval.total_seconds(),
    )


async def shutdown(raw: dict[str, Any]) -> None:
    """Stop the sweeper and dispose of what `startup` built (whatever part of it exists)."""
    ctx = cast(WorkerContext, raw)
    if ctx.get("shut_down"):
        return
    ctx["shut_down"] = True
    if "sweeper" in ctx:
        await ctx["sweeper"].stop()
    if "health_checks" in ctx:
        await ctx["health_checks"].stop()
    if "delivery" in ctx and ctx["delivery"].batches is not None:
        await ctx["delivery"].batches.aclose()  # the last claims and records commit first
    if "gateway" in ctx:
        await ctx["gateway"].aclose()
    if "limiter" in ctx:
        await ctx["limiter"].aclose()  # gives back the slots still noted, before Redis closes
    if "cache_redis" in ctx:
        await ctx["cache_redis"].aclose()
    if "engine" in ctx:
        await ctx["engine"].dispose()


def worker_settings(settings: Settings) -> WorkerSettings:
    timeout = settings.job_timeout.total_seconds()
    return WorkerSettings(
        functions=[delivery_send(timeout=timeout)],
        redis_settings=redis_settings(settings.redis_url),
        job_serializer=job_serializer,
        job_deserializer=job_deserializer,
        max_jobs=settings.worker_max_jobs,
        poll_delay=settings.worker_poll_delay.total_seconds(),
        job_timeout=timeout,
        keep_result=0,
        max_tries=MAX_TRIES,
        job_completion_wait=settings.job_completion_wait.total_seconds(),
        health_check_interval=settings.worker_health_check_interval.total_seconds(),
        # The supervisor owns SIGTERM/SIGINT: it stops the loop and lets this worker finish.
        handle_signals=False,
        on_startup=startup,
        on_shutdown=shutdown,
        ctx={"settings": settings},
    )
