"""The retry schedule and the rate-limit wait: the documented numbers, and their properties."""

import random
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.delivery.backoff import (
    DEFAULT_POLICY,
    MAX_ATTEMPTS,
    RetryPolicy,
    jittered,
)

ARQ_JOB_EXPIRY = timedelta(hours=24)

attempts = st.integers(min_value=1, max_value=200)
# What `rand` may return: [0, 1).
unit = st.floats(min_value=0, max_value=1, exclude_max=True)
retry_after = st.none() | st.floats(min_value=0, max_value=10**7, allow_nan=False)


def constant(value: float) -> "random.Random":
    class Fixed(random.Random):
        def random(self) -> float:
            return value

    return Fixed()


class TestSchedule:
    def test_the_documented_schedule(self) -> None:
        waits = [DEFAULT_POLICY.base_delay(n).total_seconds() for n in range(1, MAX_ATTEMPTS)]
        hour = 3600
        assert (
            waits == [10, 30, 120, 600, 1800, hour, 2 * hour, 4 * hour, 8 * hour] + [12 * hour] * 5
        )
        assert MAX_ATTEMPTS == 15

    def test_retries_outlive_arqs_job_expiry(self) -> None:
        total = DEFAULT_POLICY.total_retry_time
        # Even with every delay jittered to its shortest.
        assert total * 0.8 > ARQ_JOB_EXPIRY
        assert timedelta(days=3) < total < timedelta(days=4)

    def test_exhausted_at_max_attempts(self) -> None:
        assert not DEFAULT_POLICY.exhausted(MAX_ATTEMPTS - 1)
        assert DEFAULT_POLICY.exhausted(MAX_ATTEMPTS)

    @given(attempts, unit)
    def test_a_retry_delay_stays_within_20_percent_of_the_schedule(
        self, attempt: int, value: float
    ) -> None:
        base = DEFAULT_POLICY.base_delay(attempt)
        delay = DEFAULT_POLICY.retry_delay(attempt, constant(value).random)
        assert base * 0.8 <= delay <= base * 1.2

    @given(attempts, unit)
    def test_the_schedule_never_shrinks(self, attempt: int, value: float) -> None:
        rand = constant(value).random
        assert DEFAULT_POLICY.base_delay(attempt + 1) >= DEFAULT_POLICY.base_delay(attempt)
        # With the same draw, a later retry never waits less than an earlier one.
        assert DEFAULT_POLICY.retry_delay(attempt + 1, rand) >= DEFAULT_POLICY.retry_delay(
            attempt, rand
        )

    def test_jitter_spreads_retries_out(self) -> None:
        rand = random.Random(7).random
        delays = {DEFAULT_POLICY.retry_delay(3, rand) for _ in range(50)}
        assert len(delays) == 50
        assert min(delays) < timedelta(minutes=2) < max(delays)

    @given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)), unit)
    def test_jittered_bounds(self, delay: timedelta, value: float) -> None:
        result = jittered(delay, constant(value).random)
        assert delay * 0.8 <= result <= delay * 1.2

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"schedule": ()},
            {"max_attempts": 0},
            {"jitter": 1.0},
            {"schedule": (timedelta(minutes=5), timedelta(minutes=1))},
        ],
    )
    def test_nonsense_policies_are_refused(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(ValueError, match="retry"):
            RetryPolicy(**kwargs)  # type: ignore[arg-type]

    def test_attempts_count_from_one(self) -> None:
        with pytest.raises(ValueError, match="from 1"):
            DEFAULT_POLICY.base_delay(0)


class TestRateLimitWait:
    @pytest.mark.parametrize(
        ("header", "wait"),
        [(None, 60), (30, 30), (0, 1), (0.2, 1), (119, 119), (3600, 120)],
    )
    def test_the_wait_is_retry_after_clamped_to_1s_to_2x_the_default(
        self, header: float | None, wait: float
    ) -> None:
        assert DEFAULT_POLICY.rate_limit_wait(header) == timedelta(seconds=wait)

    @given(retry_after, unit)
    def test_the_delay_is_the_wait_jittered_never_before_retry_after(
        self, header: float | None, value: float
    ) -> None:
        wait = DEFAULT_POLICY.rate_limit_wait(header)
        delay = DEFAULT_POLICY.rate_limit_delay(header, constant(value).random)
        assert timedelta(seconds=0.8) <= delay <= timedelta(seconds=144)
        assert wait * 0.8 <= delay <= wait * 1.2
        if header is not None:
            assert delay >= wait

    @given(st.none() | st.floats(min_value=0, max_value=3600), unit)
    def test_a_limiter_timeout_retries_soon_or_when_the_limiter_foresaw(
        self, foreseen: float | None, value: float
    ) -> None:
        delay = DEFAULT_POLICY.limiter_timeout(foreseen, constant(value).random)
        base = max(timedelta(seconds=10), timedelta(seconds=foreseen or 0))
        assert base * 0.8 <= delay <= base * 1.2
