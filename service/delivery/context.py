"""What a delivery run is given and what it comes to: `DeliveryContext` and `Outcome`.

Every step of a run uses both (`service.delivery.sender` describes the protocol); this module
imports none of the steps at run time, so each of them can import it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.connections.gateway import QualtricsGateway
from service.delivery.backoff import DEFAULT_POLICY, Random, RetryPolicy, system_random
from service.delivery.encoding_cache import PlanCache, plan_cache
from service.delivery.ratelimit import RateLimiter
from service.models.base import utc_now

if TYPE_CHECKING:
    from service.delivery.batches import DeliveryBatches


LEASE_EXTRA = timedelta(seconds=15)
BUDGET_MARGIN = timedelta(seconds=10)


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY_SCHEDULED = "retry_scheduled"  # a retryable error; attempts += 1
    RATE_LIMITED = "rate_limited"  # a 429 or no limiter slot in time; no attempt spent
    HELD = "held"  # integration disabled or invalid (or invalidated by this attempt)
    FAILED = "failed"  # a permanent error; the reason is in `last_error`
    DEAD = "dead"  # retries exhausted
    SKIPPED = "skipped"  # nothing to do: not pending, not due, or another run has it


@dataclass(frozen=True)
class DeliveryContext:
    """What a run needs; the worker builds one at startup. Fields after `clock` are for tests."""

    sessionmaker: async_sessionmaker[AsyncSession]
    gateway: QualtricsGateway
    limiter: RateLimiter
    settings: Settings
    clock: Callable[[], datetime] = utc_now
    policy: RetryPolicy = DEFAULT_POLICY
    lease: timedelta | None = None  # default: the job timeout + LEASE_EXTRA
    rand: Random = system_random
    plans: PlanCache = plan_cache
    # Claims and successful records of concurrent runs share transactions (PostgreSQL only);
    # None: each run opens its own (see "Batching" in
    # `service.delivery.sender`).
    batches: "DeliveryBatches | None" = None

    @property
    def lease_duration(self) -> timedelta:
        """How long a claim keeps the delivery from other runs: longer than any job runs."""
        if self.lease is not None:
            return self.lease
        return self.settings.job_timeout + LEASE_EXTRA

    @property
    def send_budget(self) -> timedelta:
        """How long the send step may take: inside both the job timeout and the lease, with
        room left to record the result (50 s for the default 60 s job timeout, above the
        client's own 45 s deadline, so that one normally fires first)."""
        limit = min(self.settings.job_timeout, self.lease_duration)
        return limit - min(BUDGET_MARGIN, limit / 4)
