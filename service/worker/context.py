"""The typed shape of arq's `ctx` for this worker (style lesson 6)."""

from datetime import datetime
from typing import TypedDict

from arq.connections import ArqRedis
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.config import Settings
from service.connections.gateway import QualtricsGateway
from service.delivery.health_checks import HealthCheckLoop
from service.delivery.ratelimit import RateLimiter
from service.delivery.sender import DeliveryContext
from service.worker.sweeper import Sweeper


class WorkerContext(TypedDict, total=False):
    """What `service.worker.settings.startup` builds once per worker process."""

    redis: ArqRedis  # arq's own pool (JSON serializer); the sweeper enqueues through it
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    cache_redis: Redis  # the token cache and the rate limiter
    gateway: QualtricsGateway
    limiter: RateLimiter
    delivery: DeliveryContext
    sweeper: Sweeper
    health_checks: HealthCheckLoop
    shut_down: bool


class JobContext(WorkerContext, total=False):
    """What arq adds for each job."""

    job_id: str
    job_try: int
    enqueue_time: datetime
    score: int
