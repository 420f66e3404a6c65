"""When a delivery is tried again: the retry schedule and the rate-limit wait (design §8).

Retries (transport errors, timeouts, 5xx) follow a visible schedule (style lesson 11). After
the n-th counted attempt fails, the next one is due `SCHEDULE[n - 1]` later (the last entry
repeats), each delay jittered by ±20 % so deliveries that failed together (a Qualtrics outage)
do not all come back in the same second (the thundering herd):

    attempt  1   2    3     4      5      6    7    8    9    10   11   12   13   14   15
    then    10s 30s  2min 10min  30min   1h   2h   4h   8h   12h  12h  12h  12h  12h  dead

`MAX_ATTEMPTS` = 15 gives up about 3.2 days after the first attempt (75.7 h of delays,
±20 %). That deliberately outlives arq's 24 h job expiry (reliability-facts §0.3): the
database schedule is the truth and the sweeper carries retries past any queue's lifetime.

A 429 is not a failure of the delivery and spends no attempt (Convoy). The wait is
`Retry-After` when Qualtrics sent one, else `RATE_LIMIT_DEFAULT` (Svix enforces 60 s after a
429), at least 1 s and at most `RATE_LIMIT_MAX` (twice the default, as Svix clamps a server's
`Retry-After` to twice its own delay, so a hostile or broken header cannot park a delivery
for a day), then jittered by ±20 %, except that the wait never drops below the `Retry-After`
Qualtrics asked for (within the clamp): honouring it is the point.

Everything here is pure; `rand` returns a float in [0, 1) (a seeded `random.Random().random`
in tests, the system generator in production).
"""

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

Random = Callable[[], float]

SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=10),
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=2),
    timedelta(hours=4),
    timedelta(hours=8),
    timedelta(hours=12),
)
MAX_ATTEMPTS = 15
JITTER = 0.2

RATE_LIMIT_DEFAULT = timedelta(seconds=60)
RATE_LIMIT_MIN = timedelta(seconds=1)
RATE_LIMIT_MAX = 2 * RATE_LIMIT_DEFAULT
# When the shared limiter gives up waiting for a slot: try again soon, spending nothing.
LIMITER_TIMEOUT_DELAY = timedelta(seconds=10)

# Jitter is not security-sensitive; SystemRandom just avoids sharing a seeded global state.
system_random: Random = random.SystemRandom().random


def jittered(delay: timedelta, rand: Random, *, jitter: float = JITTER) -> timedelta:
    """`delay` scaled by a uniform factor in [1 - jitter, 1 + jitter)."""
    return delay * (1 - jitter + 2 * jitter * rand())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The schedule and limits one worker applies; `DEFAULT_POLICY` unless a test overrides."""

    schedule: Sequence[timedelta] = field(default=SCHEDULE)
    max_attempts: int = MAX_ATTEMPTS
    jitter: float = JITTER
    rate_limit_default: timedelta = RATE_LIMIT_DEFAULT
    rate_limit_min: timedelta = RATE_LIMIT_MIN
    rate_limit_max: timedelta = RATE_LIMIT_MAX
    limiter_timeout_delay: timedelta = LIMITER_TIMEOUT_DELAY

    def __post_init__(self) -> None:
        if not self.schedule or self.max_attempts < 1 or not 0 <= self.jitter < 1:
            raise ValueError("a retry policy needs a schedule, max_attempts >= 1, 0 <= jitter < 1")
        if any(later < earlier for earlier, later in itertools.pairwise(self.schedule)):
            raise ValueError("the retry schedule must not decrease")

    def base_delay(self, attempts: int) -> timedelta:
        """The un-jittered wait after the `attempts`-th counted attempt failed (1-based)."""
        if attempts < 1:
            raise ValueError("attempts counts from 1")
        return self.schedule[min(attempts, len(self.schedule)) - 1]

    def exhausted(self, attempts: int) -> bool:
        """True when `attempts` failed attempts are all the delivery gets: it is dead."""
        return attempts >= self.max_attempts

    def retry_delay(self, attempts: int, rand: Random = system_random) -> timedelta:
        """The jittered wait after the `attempts`-th counted attempt failed."""
        return jittered(self.base_delay(attempts), rand, jitter=self.jitter)

    def rate_limit_wait(self, retry_after: float | None) -> timedelta:
        """The un-jittered wait after a 429 (what the shared limiter is penalized with)."""
        wait = self.rate_limit_default if retry_after is None else timedelta(seconds=retry_after)
        return min(max(wait, self.rate_limit_min), self.rate_limit_max)

    def rate_limit_delay(
        self, retry_after: float | None, rand: Random = system_random
    ) -> timedelta:
        """When to try again after a 429: the clamped wait, jittered, never before Retry-After."""
        wait = self.rate_limit_wait(retry_after)
        floor = wait if retry_after is not None else timedelta()
        return max(jittered(wait, rand, jitter=self.jitter), floor)

    def limiter_timeout(self, retry_after: float | None, rand: Random = system_random) -> timedelta:
        """When to try again after the shared limiter gave up waiting for a slot: soon, or
        when the limiter foresaw a token (a cool-down after a 429), whichever is later."""
        foreseen = timedelta(seconds=retry_after or 0)
        return jittered(max(self.limiter_timeout_delay, foreseen), rand, jitter=self.jitter)

    @property
    def total_retry_time(self) -> timedelta:
        """The un-jittered time from the first attempt to the last (what dead means)."""
        return sum(
            (self.base_delay(attempt) for attempt in range(1, self.max_attempts)), timedelta()
        )


DEFAULT_POLICY = RetryPolicy()
