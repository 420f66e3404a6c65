"""The 429 limiter: a token bucket per brand and a cap on requests in flight per token.

The bucket refills on the fake clock, so a test with a frozen clock sees a deterministic
limiter and refills it with `advance_clock`. Changing the configured `RateLimit` starts every
bucket full again.
"""

import math
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .config import RateLimit
from .envelope import RATE_LIMITED, QualtricsError


@dataclass
class _Bucket:
    tokens: float
    updated_at: float


class RateLimiter:
    def __init__(self) -> None:
        self._limit: RateLimit | None = None
        self._buckets: dict[str, _Bucket] = {}
        self._in_flight: Counter[str] = Counter()

    @contextmanager
    def admit(
        self, limit: RateLimit | None, *, brand_id: str, token_key: str, now: float
    ) -> Iterator[None]:
        """Hold a slot for one request, or raise the 429 error."""
        if limit is not None:
            self._take(limit, brand_id, now)
            self._check_concurrency(limit, token_key)
        self._in_flight[token_key] += 1
        try:
            yield
        finally:
            self._in_flight[token_key] -= 1
            if not self._in_flight[token_key]:
                del self._in_flight[token_key]

    def _take(self, limit: RateLimit, brand_id: str, now: float) -> None:
        rate = limit.requests_per_second
        if rate is None:
            return
        if limit is not self._limit:
            self._limit, self._buckets = limit, {}
        capacity = limit.burst or max(1, math.ceil(rate))
        bucket = self._buckets.setdefault(brand_id, _Bucket(tokens=capacity, updated_at=now))
        elapsed = max(0.0, now - bucket.updated_at)
        bucket.tokens = min(capacity, bucket.tokens + elapsed * rate)
        bucket.updated_at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return
        wait = (1 - bucket.tokens) / rate
        raise _too_many("Too many requests. Please slow down.", wait, limit)

    def _check_concurrency(self, limit: RateLimit, token_key: str) -> None:
        cap = limit.max_concurrent_per_token
        if cap is not None and self._in_flight[token_key] >= cap:
            raise _too_many("You have reached the concurrent request limit.", 1.0, limit)


def _too_many(message: str, wait_seconds: float, limit: RateLimit) -> QualtricsError:
    headers = {"Retry-After": str(max(1, math.ceil(wait_seconds)))} if limit.retry_after else {}
    return QualtricsError(429, message, code=RATE_LIMITED, headers=headers)
