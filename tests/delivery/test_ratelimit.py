"""The per-brand rate limiter: its semantics on virtual time, then shared through a real Redis.

Redis tests use db 14 and a key prefix of their own, and delete only their keys. Rates are
measured on the client's clock right after each grant; the 1-second window bound checked is
1.05 x R, which at R = 20/s is R + 1: a burst of one (the default) keeps the grants themselves
at most R per second, and the one request of tolerance absorbs the jitter between a grant in
Redis and the moment its reply is seen (module docstring of `service.delivery.ratelimit`).
"""

import asyncio
import bisect
import heapq
import logging
import math
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from service.delivery import ratelimit
from service.delivery.ratelimit import (
    CATCH_UP,
    PACING_HEADROOM,
    LocalRateLimiter,
    RateLimitConfig,
    RateLimiter,
    RateLimitTimeout,
    RedisRateLimiter,
    create_rate_limiter,
    gcra,
)

REDIS_URL = "redis://127.0.0.1:6379/14"
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
REPO_ROOT = Path(__file__).resolve().parents[2]
KEY = "brand-a"
T10 = (1 + PACING_HEADROOM) / 10  # the emission interval at 10/s


def max_in_window(stamps: list[float], window: float = 1.0) -> int:
    """The most stamps in any half-open window `[t, t + window)`."""
    ordered = sorted(stamps)
    return max(
        (bisect.bisect_left(ordered, start + window) - i for i, start in enumerate(ordered)),
        default=0,
    )


class VirtualTime:
    """A clock and sleep for `LocalRateLimiter`: time moves only when a test advances it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = 0

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._order += 1
        heapq.heappush(self._timers, (self.now + max(delay, 0.0), self._order, future))
        await future

    @staticmethod
    async def settle() -> None:
        """Let every task run until it waits on the clock or on something else."""
        for _ in range(30):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        target = self.now + seconds
        await self.settle()
        while self._timers and self._timers[0][0] <= target:
            when, _, future = heapq.heappop(self._timers)
            if future.done():  # its sleep was cancelled
                continue
            self.now = max(self.now, when)
            future.set_result(None)
            await self.settle()
        self.now = target
        await self.settle()


@pytest.fixture
def vt() -> VirtualTime:
    return VirtualTime()


def local(vt: VirtualTime, **config: Any) -> LocalRateLimiter:
    return LocalRateLimiter(RateLimitConfig(**config), clock=vt.clock, sleep=vt.sleep)


class Recorder:
    """Tasks that take a slot, note when, and hold it until released or for `hold` seconds."""

    def __init__(self, limiter: RateLimiter, clock: Callable[[], float]) -> None:
        self.limiter = limiter
        self.clock = clock
        self.grants: list[tuple[int, float]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def take(self, name: int, key: str = KEY, hold: asyncio.Event | None = None) -> None:
        async with self.limiter.slot(key):
            self.grants.append((name, self.clock()))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if hold is not None:
                    await hold.wait()
            finally:
                self.in_flight -= 1

    def start(self, count: int) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self.take(i)) for i in range(count)]


class TestConfig:
    @pytest.mark.parametrize(
        "bad",
        [
            {"rate_per_second": 0},
            {"rate_per_second": math.inf},
            {"rate_per_second": math.nan},
            {"burst": 0},
            {"max_concurrency": 0},
            {"max_wait": -1},
            {"max_wait": math.inf},
            {"slot_ttl": 0},
        ],
    )
    def test_rejects_nonsense(self, bad: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match="must"):
            RateLimitConfig(**bad)

    def test_defaults_do_not_burst(self) -> None:
        """The default burst of 1 keeps every 1-s window at the rate (module docstring)."""
        config = RateLimitConfig()
        assert (config.rate_per_second, config.burst) == (10.0, 1)
        assert (config.max_concurrency, config.max_wait, config.slot_ttl) == (8, 30.0, 90.0)

    async def test_factory(self) -> None:
        assert isinstance(create_rate_limiter(None, RateLimitConfig()), LocalRateLimiter)
        client = Redis.from_url(CLOSED_PORT_URL)
        assert isinstance(create_rate_limiter(client, RateLimitConfig()), RedisRateLimiter)
        await client.aclose()


class TestGcra:
    @settings(max_examples=300)
    @example(rate=1.5, burst=1, gaps=[0] * 5)
    @example(rate=10, burst=1, gaps=[0] * 40)
    @example(rate=10, burst=3, gaps=[0] * 10 + [2_000_000_000] + [0] * 20)
    @given(
        rate=st.floats(min_value=0.5, max_value=200),
        burst=st.integers(min_value=1, max_value=5),
        gaps=st.lists(st.integers(min_value=0, max_value=300_000_000), min_size=1, max_size=80),
    )
    def test_no_second_holds_more_than_rate_plus_burst(
        self, rate: float, burst: int, gaps: list[int]
    ) -> None:
        """Requests arriving at any times, each retried when told: every half-open second
        holds at most ceil(rate) + burst - 1 grants, a refused request is granted exactly when
        told to come back, and with burst 1 the headroom leaves jitter a budget."""
        interval = math.ceil(1e9 * (1 + PACING_HEADROOM) / rate)
        tolerance = (burst - 1) * interval + math.ceil(CATCH_UP * 1e9)
        now, tat, grants = 0, None, []
        for gap in gaps:
            now += gap
            wait, new_tat = gcra(now, tat, interval, tolerance)
            if wait:
                assert new_tat == tat  # a refusal changes nothing
                now += wait
                wait, new_tat = gcra(now, tat, interval, tolerance)
                assert wait == 0
            tat = new_tat
            grants.append(now)
        worst = max(bisect.bisect_left(grants, g + 1_000_000_000) - i for i, g in enumerate(grants))
        assert worst <= math.ceil(rate) + burst - 1
        if burst == 1:
            n = math.ceil(rate)  # so ceil(rate) + 1 grants span at least 1.025 s
            spans = [later - earlier for earlier, later in zip(grants, grants[n:], strict=False)]
            assert all(span >= n * interval - tolerance for span in spans)
            assert all(span >= round(1e9 * (1 + PACING_HEADROOM - CATCH_UP)) for span in spans)

    def test_an_idle_bucket_grants_a_burst(self) -> None:
        assert gcra(100, None, 10, 20) == (0, 110)
        assert gcra(100, 110, 10, 20) == (0, 120)
        assert gcra(100, 120, 10, 20) == (0, 130)
        assert gcra(100, 130, 10, 20) == (10, 130)


class TestLocal:
    async def test_requests_are_spaced_by_the_emission_interval(self, vt: VirtualTime) -> None:
        recorder = Recorder(local(vt, rate_per_second=10), vt.clock)
        tasks = recorder.start(5)
        await vt.advance(1.0)
        await asyncio.gather(*tasks)
        assert [name for name, _ in recorder.grants] == [0, 1, 2, 3, 4]  # first come, first served
        # Each waiter is let in CATCH_UP ahead of its GCRA time (it woke exactly when told).
        expected = [0] + [k * T10 - CATCH_UP for k in range(1, 5)]
        assert [at - 1000.0 for _, at in recorder.grants] == pytest.approx(expected)

    async def test_a_burst_goes_at_once_then_the_rate(self, vt: VirtualTime) -> None:
        recorder = Recorder(local(vt, rate_per_second=10, burst=3), vt.clock)
        tasks = recorder.start(5)
        await vt.advance(1.0)
        await asyncio.gather(*tasks)
        expected = [0, 0, 0, T10 - CATCH_UP, 2 * T10 - CATCH_UP]
        assert [at - 1000.0 for _, at in recorder.grants] == pytest.approx(expected)

    async def test_concurrency_cap_and_release_wakes_the_next(self, vt: VirtualTime) -> None:
        recorder = Recorder(local(vt, rate_per_second=1000, burst=10, max_concurrency=2), vt.clock)
        holds = [asyncio.Event() for _ in range(5)]
        tasks = [asyncio.create_task(recorder.take(i, hold=holds[i])) for i in range(5)]
        await vt.settle()
        assert [name for name, _ in recorder.grants] == [0, 1]
        holds[1].set()
        await vt.settle()
        assert [name for name, _ in recorder.grants] == [0, 1, 2]  # no clock needed: woken
        for hold in holds:
            hold.set()
        await vt.advance(0)
        await asyncio.gather(*tasks)
        assert [name for name, _ in recorder.grants] == [0, 1, 2, 3, 4]
        assert recorder.max_in_flight == 2
        assert vt.now == 1000.0

    async def test_penalty_blocks_then_resumes_at_the_rate(self, vt: VirtualTime) -> None:
        limiter = local(vt, rate_per_second=10, burst=3)
        recorder = Recorder(limiter, vt.clock)
        await limiter.penalize(KEY, 2.0)
        await limiter.penalize(KEY, 0.5)  # a shorter penalty does not shorten the cool-down
        tasks = recorder.start(4)
        other = asyncio.create_task(recorder.take(9, key="brand-b"))
        await vt.advance(3.0)
        await asyncio.gather(*tasks, other)
        assert recorder.grants[0] == (9, 1000.0)  # another brand is not blocked
        # The bucket is empty when the cool-down ends: no burst into the brand that said 429.
        expected = [2.0 + k * T10 for k in range(4)]
        assert [at - 1000.0 for _, at in recorder.grants[1:]] == pytest.approx(expected)

    async def test_penalties_that_ask_for_nothing(self, vt: VirtualTime) -> None:
        limiter = local(vt)
        await limiter.penalize(KEY, 0)
        await limiter.penalize(KEY, -3)
        with pytest.raises(ValueError, match="finite"):
            await limiter.penalize(KEY, math.nan)
        async with limiter.slot(KEY):
            assert vt.now == 1000.0

    async def test_a_known_wait_beyond_max_wait_raises_at_once(self, vt: VirtualTime) -> None:
        limiter = local(vt, max_wait=1.0)
        await limiter.penalize(KEY, 5.0)
        with pytest.raises(RateLimitTimeout) as raised:
            async with limiter.slot(KEY):
                pytest.fail("must not be granted")
        assert raised.value.retry_after == pytest.approx(5.0)
        assert raised.value.key == KEY
        assert vt.now == 1000.0

    async def test_an_unknown_wait_raises_at_the_deadline(self, vt: VirtualTime) -> None:
        limiter = local(vt, max_concurrency=1, max_wait=1.0)
        recorder = Recorder(limiter, vt.clock)
        hold = asyncio.Event()
        holder = asyncio.create_task(recorder.take(0, hold=hold))
        await vt.advance(0.5)
        waiters = [asyncio.create_task(recorder.take(i)) for i in (1, 2)]  # head and queued
        await vt.advance(0.99)
        assert not any(waiter.done() for waiter in waiters)
        await vt.advance(0.02)
        for waiter in waiters:
            with pytest.raises(RateLimitTimeout) as raised:
                await waiter
            assert raised.value.retry_after is None
        hold.set()
        await holder
        async with limiter.slot(KEY):  # nothing leaked
            pass

    async def test_cancelled_waiter_passes_its_turn(self, vt: VirtualTime) -> None:
        limiter = local(vt, rate_per_second=1000, burst=5, max_concurrency=1)
        recorder = Recorder(limiter, vt.clock)
        hold = asyncio.Event()
        holder = asyncio.create_task(recorder.take(0, hold=hold))
        head = asyncio.create_task(recorder.take(1))
        queued = asyncio.create_task(recorder.take(2))
        await vt.settle()
        head.cancel()
        await vt.settle()
        hold.set()
        await vt.settle()
        await asyncio.gather(holder, queued)
        assert head.cancelled()
        assert [name for name, _ in recorder.grants] == [0, 2]

    async def test_slot_is_released_on_exception_and_cancellation(self, vt: VirtualTime) -> None:
        limiter = local(vt, rate_per_second=1000, burst=5, max_concurrency=1, max_wait=0)
        with pytest.raises(LookupError):
            async with limiter.slot(KEY):
                raise LookupError
        entered = asyncio.Event()

        async def hold_forever() -> None:
            async with limiter.slot(KEY):
                entered.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(hold_forever())
        await entered.wait()
        with pytest.raises(RateLimitTimeout):  # held: max_wait=0 cannot wait for it
            async with limiter.slot(KEY):
                pass
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await vt.settle()
        async with limiter.slot(KEY):
            pass


# ---- Redis --------------------------------------------------------------------------------


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    prefix = f"test:ratelimit:{uuid.uuid4().hex}:"
    yield prefix
    keys = [key async for key in redis.scan_iter(match=prefix + "*")]
    if keys:
        await redis.delete(*keys)


Workers = Callable[..., RedisRateLimiter]


@pytest.fixture
async def workers(prefix: str) -> AsyncIterator[Workers]:
    """Limiters on connections of their own, as separate worker processes have."""
    clients: list[Redis] = []
    limiters: list[RedisRateLimiter] = []

    def make(**config: Any) -> RedisRateLimiter:
        client = Redis.from_url(REDIS_URL)
        clients.append(client)
        limiters.append(RedisRateLimiter(client, RateLimitConfig(**config), prefix=prefix))
        return limiters[-1]

    yield make
    for limiter in limiters:
        await limiter.aclose()
    for client in clients:
        await client.aclose()


async def run_for(seconds: float, limiter: RateLimiter, tasks: int, stamps: list[float]) -> None:
    """`tasks` tasks take slots back to back for `seconds`, then are cancelled, waiting or not."""

    async def loop() -> None:
        while True:
            async with limiter.slot(KEY):
                stamps.append(time.monotonic())

    running = [asyncio.create_task(loop()) for _ in range(tasks)]
    await asyncio.sleep(seconds)
    for task in running:
        task.cancel()
    results = await asyncio.gather(*running, return_exceptions=True)
    assert all(isinstance(result, asyncio.CancelledError) for result in results)


@pytest.fixture
def capture_warnings(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=ratelimit.__name__)
    return caplog


class TestRedis:
    async def test_two_workers_stay_within_the_rate_in_every_second(self, workers: Workers) -> None:
        rate, seconds = 20, 2.5
        first = workers(rate_per_second=rate, max_concurrency=100)
        second = workers(rate_per_second=rate, max_concurrency=100)
        stamps_first: list[float] = []
        stamps_second: list[float] = []
        await asyncio.gather(
            run_for(seconds, first, 8, stamps_first), run_for(seconds, second, 8, stamps_second)
        )
        stamps = stamps_first + stamps_second
        assert max_in_window(stamps) <= 1.05 * rate
        assert len(stamps) >= 0.7 * rate * seconds  # and not far below it either (even under load)
        # Neither worker starves the other.
        assert min(len(stamps_first), len(stamps_second)) >= 0.2 * len(stamps)

    async def test_concurrency_cap_holds_across_workers(self, workers: Workers) -> None:
        limiters = [workers(rate_per_second=1000, max_concurrency=3) for _ in range(2)]
        in_flight = peak = 0
        end = time.monotonic() + 0.6

        async def loop(limiter: RedisRateLimiter) -> None:
            nonlocal in_flight, peak
            while time.monotonic() < end:
                async with limiter.slot(KEY):
                    in_flight += 1
                    peak = max(peak, in_flight)
                    await asyncio.sleep(0.02)
                    in_flight -= 1

        await asyncio.gather(*(loop(limiter) for limiter in limiters for _ in range(6)))
        assert peak == 3

    async def test_penalty_blocks_every_worker_until_it_passes(self, workers: Workers) -> None:
        first, second = workers(), workers()
        await first.penalize(KEY, 0.6)
        await second.penalize(KEY, 0.1)  # the longer cool-down stands
        started = time.monotonic()

        async def wait_for_slot(limiter: RedisRateLimiter, key: str = KEY) -> float:
            async with limiter.slot(key):
                return time.monotonic() - started

        waited = await asyncio.gather(
            wait_for_slot(first), wait_for_slot(second), wait_for_slot(second, "brand-b")
        )
        assert waited[2] < 0.1  # another brand is not blocked
        assert min(waited[:2]) >= 0.55
        assert max(waited[:2]) <= 1.0
        # The bucket was empty at the end of the cool-down: the two went one interval apart.
        assert abs(waited[0] - waited[1]) >= 0.09

    async def test_slot_of_a_killed_worker_is_reclaimed(
        self, workers: Workers, prefix: str
    ) -> None:
        ttl = 0.8
        child = f"""
import asyncio
from redis.asyncio import Redis
from service.delivery.ratelimit import RateLimitConfig, RedisRateLimiter

async def main():
    config = RateLimitConfig(rate_per_second=1000, max_concurrency=1, slot_ttl={ttl})
    limiter = RedisRateLimiter(Redis.from_url({REDIS_URL!r}), config, prefix={prefix!r})
    async with limiter.slot({KEY!r}):
        print("held", flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", child, cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE
        )
        assert process.stdout is not None
        assert await asyncio.wait_for(process.stdout.readline(), 10) == b"held\n"
        held = time.monotonic()
        process.kill()  # SIGKILL: no release
        await process.stdout.read()
        await process.wait()
        with pytest.raises(RateLimitTimeout):
            async with workers(rate_per_second=1000, max_concurrency=1, max_wait=0.1).slot(KEY):
                pass
        async with workers(rate_per_second=1000, max_concurrency=1, max_wait=3).slot(KEY):
            reclaimed_after = time.monotonic() - held
        assert ttl - 0.15 <= reclaimed_after <= ttl + 0.4

    async def test_max_wait(self, workers: Workers) -> None:
        limiter = workers(rate_per_second=1000, max_concurrency=1, max_wait=0.3)
        await limiter.penalize("brand-b", 5)
        started = time.monotonic()
        with pytest.raises(RateLimitTimeout) as raised:
            async with limiter.slot("brand-b"):
                pass
        assert time.monotonic() - started < 0.1  # a known wait beyond max_wait: at once
        assert raised.value.retry_after == pytest.approx(5, abs=0.2)

        async with limiter.slot(KEY):
            started = time.monotonic()
            with pytest.raises(RateLimitTimeout) as raised:
                async with workers(rate_per_second=1000, max_concurrency=1, max_wait=0.3).slot(KEY):
                    pass
            assert 0.28 <= time.monotonic() - started <= 0.5  # slots held: at the deadline
            assert raised.value.retry_after is None

    async def test_slot_is_released_on_exception_and_cancellation(
        self, workers: Workers, redis: Redis, prefix: str
    ) -> None:
        limiter = workers(rate_per_second=1000, max_concurrency=1, max_wait=0.2)
        holders = f"{prefix}{{{KEY}}}:holders"

        async def fail_while_holding() -> None:
            async with limiter.slot(KEY):
                assert await redis.zcard(holders) == 1
                assert 0 < await redis.pttl(holders) <= 91_000  # expires if never released
                raise LookupError

        with pytest.raises(LookupError):
            await fail_while_holding()
        await asyncio.sleep(ratelimit.RELEASE_FLUSH_DELAY + 0.05)
        assert await redis.zcard(holders) == 0

        entered = asyncio.Event()

        async def hold_forever() -> None:
            async with limiter.slot(KEY):
                entered.set()
                await asyncio.Event().wait()

        holder = asyncio.create_task(hold_forever())
        await entered.wait()
        waiter = asyncio.create_task(hold_forever())  # waits for the held slot
        await asyncio.sleep(0.05)
        waiter.cancel()
        holder.cancel()
        for task in (waiter, holder):
            with pytest.raises(asyncio.CancelledError):
                await task
        await asyncio.sleep(ratelimit.RELEASE_FLUSH_DELAY + 0.05)
        assert await redis.zcard(holders) == 0
        started = time.monotonic()
        async with workers(rate_per_second=1000, max_concurrency=1).slot(KEY):
            assert time.monotonic() - started < 0.1

    async def test_a_slot_given_back_goes_with_the_next_acquisition(
        self, workers: Workers, redis: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        limiter = workers(rate_per_second=1000, max_concurrency=1, max_wait=0.5)
        other = workers(rate_per_second=1000, max_concurrency=1, max_wait=0.5)
        holders = f"{prefix}{{{KEY}}}:holders"
        removals: list[tuple[str, ...]] = []
        zrem = limiter._redis.zrem

        async def recording_zrem(name: str, *ids: str) -> Any:
            removals.append(ids)
            return await zrem(name, *ids)

        monkeypatch.setattr(limiter._redis, "zrem", recording_zrem)
        for _ in range(10):  # a cap of 1: each grant needs the previous slot removed first
            async with limiter.slot(KEY):
                assert await redis.zcard(holders) == 1
        assert removals == []  # no round trip of their own: the next script took them along
        # The last one goes by itself, at once for this process and within the flush delay
        # for every other one.
        async with limiter.slot(KEY):
            pass
        started = time.monotonic()
        async with other.slot(KEY):
            assert time.monotonic() - started < 0.1
        assert [len(ids) for ids in removals] == [1]

    async def test_one_call_grants_the_waiters_queued_behind_the_head(
        self, workers: Workers, redis: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        limiter = workers(rate_per_second=100_000, burst=20, max_concurrency=8)
        holders = f"{prefix}{{{KEY}}}:holders"
        asked: list[int] = []
        script = limiter._acquire_script

        async def counting_script(*, keys: list[str], args: list[Any]) -> Any:
            asked.append(int(args[5]))
            return await script(keys=keys, args=args)

        monkeypatch.setattr(limiter, "_acquire_script", counting_script)
        inside = 0
        most_inside = 0
        all_in = asyncio.Event()
        leave = asyncio.Event()

        async def hold() -> None:
            nonlocal inside, most_inside
            async with limiter.slot(KEY):
                inside += 1
                most_inside = max(most_inside, inside)
                if inside == 8:
                    all_in.set()
                await leave.wait()
                inside -= 1

        tasks = [asyncio.create_task(hold()) for _ in range(12)]
        await asyncio.wait_for(all_in.wait(), 2)
        assert await redis.zcard(holders) == 8  # the cap, with 4 still waiting
        assert sum(asked) >= 8
        assert len(asked) <= 3  # the first alone, then the rest together
        leave.set()
        await asyncio.gather(*tasks)
        assert most_inside == 8
        await asyncio.sleep(ratelimit.RELEASE_FLUSH_DELAY + 0.05)
        assert await redis.zcard(holders) == 0

    async def test_grants_nobody_takes_are_given_back(
        self, workers: Workers, redis: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        limiter = workers(rate_per_second=100_000, burst=20, max_concurrency=8)
        holders = f"{prefix}{{{KEY}}}:holders"
        await limiter.penalize(KEY, 0.1)  # the head waits it out while the others queue
        script = limiter._acquire_script
        behind: list[asyncio.Task[None]] = []
        asked: list[int] = []

        async def cancelling_script(*, keys: list[str], args: list[Any]) -> Any:
            asked.append(int(args[5]))
            if asked[-1] == 3:  # asked for all three: the two behind give up meanwhile
                for task in behind:
                    task.cancel()
            return await script(keys=keys, args=args)

        monkeypatch.setattr(limiter, "_acquire_script", cancelling_script)
        entered = asyncio.Event()

        async def hold() -> None:
            async with limiter.slot(KEY):
                entered.set()
                await asyncio.Event().wait()

        head = asyncio.create_task(hold())
        await asyncio.sleep(0.01)
        behind.extend(asyncio.create_task(hold()) for _ in range(2))
        await asyncio.wait_for(entered.wait(), 2)
        assert asked[-1] == 3
        for task in behind:
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 2)
        await asyncio.sleep(ratelimit.RELEASE_FLUSH_DELAY + 0.05)
        assert await redis.zcard(holders) == 1  # the head's; the two spare grants went back
        head.cancel()
        with pytest.raises(asyncio.CancelledError):
            await head

    async def test_aclose_gives_back_the_noted_slots_at_once(
        self, workers: Workers, redis: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(ratelimit, "RELEASE_FLUSH_DELAY", 60.0)
        limiter = workers(rate_per_second=1000, max_concurrency=4)
        holders = f"{prefix}{{{KEY}}}:holders"
        async with limiter.slot(KEY), limiter.slot(KEY):
            assert await redis.zcard(holders) == 2
        assert await redis.zcard(holders) == 2  # noted, not yet removed
        await limiter.aclose()
        assert await redis.zcard(holders) == 0

    async def test_unreachable_redis_falls_back_and_still_limits(
        self, capture_warnings: pytest.LogCaptureFixture
    ) -> None:
        client = Redis.from_url(CLOSED_PORT_URL, socket_connect_timeout=0.5)
        try:
            limiter = RedisRateLimiter(client, RateLimitConfig(rate_per_second=20))
            stamps: list[float] = []
            await run_for(1.0, limiter, 6, stamps)
            assert max_in_window(stamps) <= 20
            assert len(stamps) >= 15
            await limiter.penalize(KEY, 0.3)  # recorded locally, no error
            started = time.monotonic()
            async with limiter.slot(KEY):
                assert time.monotonic() - started >= 0.25
        finally:
            await client.aclose()
        warnings = [r for r in capture_warnings.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1  # once per outage, not per request
        assert "unavailable" in warnings[0].getMessage()

    async def test_returns_to_redis_when_it_answers_again(
        self,
        workers: Workers,
        redis: Redis,
        prefix: str,
        monkeypatch: pytest.MonkeyPatch,
        capture_warnings: pytest.LogCaptureFixture,
    ) -> None:
        monkeypatch.setattr(ratelimit, "REDIS_RETRY_INTERVAL", 0.2)
        limiter = workers(rate_per_second=1000)
        client = limiter._redis

        async def refuse(*args: object) -> object:
            raise RedisConnectionError("refused")

        monkeypatch.setattr(client, "evalsha", refuse)
        holders = f"{prefix}{{{KEY}}}:holders"
        async with limiter.slot(KEY):  # served locally
            assert await redis.zcard(holders) == 0
        monkeypatch.undo()
        async with limiter.slot(KEY):  # still within the retry interval: local
            assert await redis.zcard(holders) == 0
        await asyncio.sleep(0.25)
        async with limiter.slot(KEY):
            assert await redis.zcard(holders) == 1
        messages = [r.getMessage() for r in capture_warnings.records]
        assert [m for m in messages if "unavailable" in m or "available again" in m] == [
            "Redis rate limiter unavailable (ConnectionError); limiting per process until it "
            "answers",
            "Redis rate limiter available again; limiting across processes",
        ]
