"""The Qualtrics rate limiter: one per brand, shared by every worker (design §8).

Usage, around every request to a brand::

    async with limiter.slot(brand_key):
        response = await client.post(...)
    # on a 429, outside the slot:
    await limiter.penalize(brand_key, retry_after_seconds)

`slot()` waits for a *rate token* and a *concurrency slot* of the key, taken together, and gives
the slot back on exit (also on an exception or cancellation). `penalize()` starts a cool-down
that every process honours: nobody sends for the key until it has passed.

**Waiting is not an attempt.** Time spent in `slot()` and a `RateLimitTimeout` out of it mean
that nothing was sent. The caller must reschedule such a delivery without counting a delivery
attempt and without spending an arq try (reliability-facts §0 item 8 and §4.4, as Convoy does);
`RateLimitTimeout.retry_after` says when trying again makes sense, if the limiter knows. A 429
from Qualtrics is likewise a `penalize()` plus a reschedule, not a failed attempt.

Rate: GCRA, headroom and the 1-second window
--------------------------------------------
The rate is a GCRA (the generic cell rate algorithm: a token bucket kept as one timestamp, the
theoretical arrival time). Requests are spaced by the emission interval
`T = (1 + PACING_HEADROOM) / rate_per_second`: `rate` requests per 1.03 s. After an idle spell
`burst` requests may go back to back, and any request may go up to `CATCH_UP` (5 ms) ahead of
its turn, so a waiter that wakes a little late does not lose that time for good (without it,
polling lost 3-11 % of the rate in measurements). On the limiter's clock (Redis `TIME`):

* every half-open 1-second window holds at most `ceil(rate) + burst - 1` grants;
* with `burst = 1`, `n` consecutive intervals span at least `n * T - CATCH_UP`: any
  `ceil(rate) + 1` grants take at least 1.025 s.

Why the default `burst` is 1 and why the headroom: the delivery benchmark demands at most
1.05 x rate requests in every sliding second *as Qualtrics sees them*, with several workers.
Between a grant and its arrival lie event loops and the network; with grants exactly `1/rate`
apart, any extra delay of the first request of a second over the last would pull `rate + 1`
into one second, which breaks 1.05 x rate below 20/s. The headroom gives that jitter a 25 ms
budget. A burst `b > 1` lets `rate + b - 1` land in the second after an idle spell, so keep
`b - 1 <= 0.05 * rate` if that bound matters. All spacing is rounded up to a whole microsecond
(nanosecond locally), so rounding never speeds the rate up.

A penalty empties the bucket as well as blocking: when the cool-down ends, sending resumes at
the steady rate, one request per `T`, not with a burst into the brand that just said 429.

Concurrency
-----------
At most `max_concurrency` slots per key are held at once (Qualtrics describes 429 as a
"concurrent request limit", qualtrics-api.md §6.1). In Redis every holder carries an expiry
`slot_ttl` after it was granted, so the slot of a worker killed with SIGKILL frees itself;
`slot_ttl` must exceed the longest request (the HTTP timeout plus margin), or a slow request's
slot is counted free while it still runs.

Fairness and timeouts
---------------------
Within one process the waiters of a key queue first-in first-out, and only the head of the
queue asks the shared state; across processes the heads compete, so the next token goes to
whichever process asks first after it is due (fair-ish, never starved by a herd: one poller per
process and key). A wait the limiter can predict (the cool-down, the next token) that would
end after `max_wait` raises `RateLimitTimeout` at once; a wait it cannot predict (all slots
held) raises when `max_wait` has passed. A Redis call in progress at the deadline may add up to
`REDIS_CALL_TIMEOUT` (2 s) to that.

Redis (`RedisRateLimiter`)
--------------------------
Per key, under `<prefix>{<key>}:` (a hash tag, so one brand's keys share a Cluster slot):
`tat` (the GCRA theoretical arrival time), `holders` (a sorted set of holder ids scored by
expiry) and `blocked` (the cool-down's end). One Lua script per acquisition attempt reads the
Redis server clock (`TIME`, so hosts with skewed clocks agree), evicts expired holders, and
either grants (advances `tat`, adds the holder) or answers "retry after N microseconds". The
client sleeps that long plus up to 1 ms of jitter and asks again. A released slot wakes the
process's own head waiter at once; slots released elsewhere are seen on the next poll (every
10-100 ms). Both scripts run by EVALSHA, loaded on NOSCRIPT (`register_script`). Every key
carries a TTL, so an idle brand leaves nothing behind.

The head asks for itself and for the waiters queued behind it (at most `MAX_GRANTS_PER_CALL`)
in one script call, which grants as many of them as the rate, the cap and the cool-down allow
at that instant; the waiters granted are woken together and take their grants without asking
Redis. When the last waiter leaves (served, timed out or cancelled), grants nobody took
are given back, and a penalty gives them back at once. Under load this makes one round trip
serve many requests instead of each waiter queueing behind the previous one's round trip; at a
low rate there is rarely more than one grant to give.

Giving a slot back costs no round trip of its own: the holder id is noted, the process's head
waiter is woken at once, and the next acquisition script for that key removes the noted holders
before it counts the slots (a busy worker asks every millisecond or two). Holders nobody takes
along within `RELEASE_FLUSH_DELAY` go in one ZREM. So another process may see a slot as held
for up to that long after it was given back; this process never does, and its own next request
finds it free in the same script that grants it. A separate ZREM per release was one Redis
round trip in five of a delivery's.

When Redis fails
----------------
Losing Redis must not stop deliveries (design §2). When a Redis call fails or takes longer than
2 s, the limiter logs one warning and limits per process with the same config (a
`LocalRateLimiter`) and tries Redis again 5 s later; it logs again once Redis answers. The price
of that choice: during an outage N worker processes may send up to N x the rate to a brand, and
slots granted locally are invisible to Redis once it is back (a brief overshoot of the
concurrency cap). Qualtrics' own 429s, handled by `penalize()` (which also records the cool-down
locally), are the backstop. Blocking instead would hold every delivery hostage to Redis for a
limiter whose job is only to be polite. A slot whose release cannot reach Redis (or whose grant
reply was lost) expires after `slot_ttl`.
"""

import asyncio
import contextlib
import functools
import itertools
import logging
import math
import random
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

REDIS_KEY_PREFIX = "connector:ratelimit:"

# A Redis call that takes longer than this counts as Redis being unavailable.
REDIS_CALL_TIMEOUT = 2.0
# How long to limit per process after a Redis failure before asking Redis again.
REDIS_RETRY_INTERVAL = 5.0
# One acquisition call asks for at most this many holders (the head and those behind it).
MAX_GRANTS_PER_CALL = 16
# Slots given back and not yet taken along by an acquisition are removed after at most this.
RELEASE_FLUSH_DELAY = 0.005
# Added to every Redis-directed sleep, so the processes' head waiters do not ask in lockstep.
MAX_JITTER = 0.001
# Requests are spaced (1 + PACING_HEADROOM) / rate apart: `rate` requests per 1.03 s.
PACING_HEADROOM = 0.03
# A request may go up to this much ahead of its GCRA time, so a waiter that wakes late does not
# lose the time for good (see "Rate" in the module docstring); must stay below the headroom.
CATCH_UP = 0.005

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
# Gives the slot back; never blocks, never raises (any I/O it needs runs in the background).
Release = Callable[[], None]

_BLOCKED, _FULL, _RATE = 1, 2, 3  # why a Redis acquisition attempt was refused


class RateLimiter(Protocol):
    def slot(self, key: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Wait (without limit other than `max_wait`) until `key` may send one request: a rate
        token AND a concurrency slot; the slot is released on exit."""
        ...

    async def penalize(self, key: str, seconds: float) -> None:
        """Qualtrics answered 429: nobody sends for `key` during the next `seconds` (a shared
        cool-down)."""
        ...

    async def aclose(self) -> None:
        """Finish what the limiter still has to tell others (before its Redis client closes)."""
        ...


class RateLimitTimeout(Exception):
    """Raised by `slot()` when the wait would exceed `max_wait`; nothing was sent.

    `retry_after` is the wait the limiter foresaw, in seconds, when it knew one (a cool-down or
    the next token); None when it was waiting for a slot to be given back.
    """

    def __init__(
        self,
        message: str = "rate limit wait would exceed max_wait",
        *,
        key: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.key = key
        self.retry_after = retry_after


@dataclass(frozen=True)
class RateLimitConfig:
    """One brand's limits; see the module docstring for what `burst` does to a 1-s window."""

    rate_per_second: float = 10.0
    burst: int = 1
    max_concurrency: int = 8
    max_wait: float = 30.0
    slot_ttl: float = 90.0  # a crashed holder's slot expires (Redis only)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_per_second) and self.rate_per_second > 0):
            raise ValueError("rate_per_second must be a positive number")
        if self.burst < 1:
            raise ValueError("burst must be at least 1")
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if not (math.isfinite(self.max_wait) and self.max_wait >= 0):
            raise ValueError("max_wait must be a non-negative number")
        if not (math.isfinite(self.slot_ttl) and self.slot_ttl > 0):
            raise ValueError("slot_ttl must be a positive number")


def _interval(config: RateLimitConfig, units_per_second: int) -> int:
    """The emission interval in integer time units, with the headroom, rounded up."""
    return math.ceil(units_per_second * (1 + PACING_HEADROOM) / config.rate_per_second)


def _tolerance(config: RateLimitConfig, units_per_second: int) -> int:
    """How far ahead of its turn a request may go: `burst - 1` intervals plus the catch-up."""
    catch_up = math.ceil(CATCH_UP * units_per_second)
    return (config.burst - 1) * _interval(config, units_per_second) + catch_up


def gcra(now: int, tat: int | None, interval: int, tolerance: int) -> tuple[int, int]:
    """One GCRA decision in integer time: `(0, new_tat)` grants, `(wait, tat)` refuses.

    `tat` is the theoretical arrival time (None: idle). The Redis script is the same algorithm.
    """
    tat = now if tat is None or tat < now else tat
    allow_at = tat - tolerance
    if allow_at > now:
        return allow_at - now, tat
    return 0, tat + interval


def _check_penalty(seconds: float) -> bool:
    """Whether `seconds` asks for a cool-down at all; infinite or NaN ones are refused."""
    if not math.isfinite(seconds):
        raise ValueError("a penalty must be a finite number of seconds")
    return seconds > 0


class _Waiting:
    """Deadline-bounded waits and the per-key FIFO of one process's waiters."""

    def __init__(self, clock: Clock, sleep: Sleep) -> None:
        self.clock = clock
        self.sleep = sleep
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}

    async def until(self, event: "asyncio.Future[None] | None", deadline: float) -> bool:
        """Wait for `event` or for the clock to reach `deadline`; whether `event` completed."""
        remaining = deadline - self.clock()
        if event is None:
            if remaining > 0:
                await self.sleep(remaining)
            return False
        if event.done() or remaining <= 0:
            return event.done()
        timer = asyncio.ensure_future(self.sleep(remaining))
        try:
            await asyncio.wait((event, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        return event.done()

    def waiting(self, key: str) -> int:
        """How many of this process's waiters queue for `key` (the head included)."""
        queue = self._queues.get(key)
        return 0 if queue is None else len(queue)

    def not_yet_woken(self, key: str) -> int:
        """How many of `key`'s waiters still wait for their turn."""
        return sum(1 for turn in self._queues.get(key, ()) if not turn.done())

    def wake(self, key: str, count: int) -> None:
        """Give the next `count` waiters of `key` their turn now, together with the head's."""
        for turn in self._queues.get(key, ()):
            if count <= 0:
                return
            if not turn.done():
                turn.set_result(None)
                count -= 1

    @contextlib.asynccontextmanager
    async def turn(self, key: str, deadline: float) -> AsyncIterator[None]:
        """Be the head of `key`'s queue in this process (FIFO) for the duration of the block."""
        queue = self._queues.setdefault(key, deque())
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(mine)
        if queue[0] is mine:
            mine.set_result(None)
        try:
            if not await self.until(mine, deadline):
                raise RateLimitTimeout(key=key)
            yield
        finally:
            queue.remove(mine)
            if not queue:
                del self._queues[key]
            elif not queue[0].done():
                queue[0].set_result(None)


class _Signal:
    """A wake-up for the head waiter of each key: set when a slot is given back."""

    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[None]] = {}

    def future(self, key: str) -> "asyncio.Future[None]":
        future = self._futures.get(key)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._futures[key] = future
        return future

    def fire(self, key: str) -> None:
        future = self._futures.pop(key, None)
        if future is not None and not future.done():
            future.set_result(None)


@contextlib.asynccontextmanager
async def _slot(acquire: Callable[[], Awaitable[Release]]) -> AsyncIterator[None]:
    release = await acquire()
    try:
        yield
    finally:
        release()  # synchronous: a cancellation cannot interrupt it


class _LocalKey:
    __slots__ = ("blocked_until", "holders", "tat")

    def __init__(self) -> None:
        self.tat: int | None = None
        self.blocked_until: int | None = None
        self.holders = 0


class LocalRateLimiter:
    """The limiter within one process (embedded mode, tests, and the Redis fallback).

    Same semantics as `RedisRateLimiter` on the injected `clock` (seconds) and `sleep`; waiters
    are served strictly first-in first-out. There is no `slot_ttl` here: a slot is given back
    when its block exits, and nothing outlives the process.
    """

    def __init__(
        self,
        config: RateLimitConfig,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._config = config
        self._waiting = _Waiting(clock, sleep)
        self._released = _Signal()
        self._keys: dict[str, _LocalKey] = {}
        self._interval = _interval(config, 1_000_000_000)
        self._tolerance = _tolerance(config, 1_000_000_000)

    def slot(self, key: str) -> contextlib.AbstractAsyncContextManager[None]:
        return _slot(functools.partial(self._acquire, key, self._config.max_wait))

    async def penalize(self, key: str, seconds: float) -> None:
        if not _check_penalty(seconds):
            return
        state = self._keys.setdefault(key, _LocalKey())
        until = self._now() + math.ceil(seconds * 1e9)
        if state.blocked_until is None or state.blocked_until < until:
            state.blocked_until = until
        # An empty bucket when the cool-down ends: the next grant at its end, then one per T.
        empty_at = state.blocked_until + self._tolerance
        if state.tat is None or state.tat < empty_at:
            state.tat = empty_at

    def _now(self) -> int:
        return round(self._waiting.clock() * 1e9)

    async def aclose(self) -> None:
        """Nothing outlives the process."""

    async def _acquire(self, key: str, max_wait: float) -> Release:
        clock = self._waiting.clock
        deadline = clock() + max_wait
        state = self._keys.setdefault(key, _LocalKey())
        async with self._waiting.turn(key, deadline):
            while True:
                now = self._now()
                if state.blocked_until is not None and state.blocked_until > now:
                    wait = state.blocked_until - now
                elif state.holders >= self._config.max_concurrency:
                    released = self._released.future(key)
                    if not await self._waiting.until(released, deadline):
                        raise RateLimitTimeout(key=key)
                    continue
                else:
                    wait, tat = gcra(now, state.tat, self._interval, self._tolerance)
                    if wait == 0:
                        state.tat = tat
                        state.holders += 1
                        return functools.partial(self._release, key, state)
                seconds = wait / 1e9
                if clock() + seconds > deadline:
                    raise RateLimitTimeout(key=key, retry_after=seconds)
                await self._waiting.sleep(seconds)

    def _release(self, key: str, state: _LocalKey) -> None:
        state.holders -= 1
        self._released.fire(key)


# KEYS: tat, holders, blocked. ARGV: interval_us, tolerance_us, max_concurrency, slot_ttl_us,
# poll_us, n, n holder ids (in order), then the holder ids given back since the last call
# (removed first). Grants the first k <= n holders, each as the single-grant rule would one
# after the other at the same instant. Returns {k, 0, 0} with k >= 1, or {0, wait_us, why}
# (nothing granted; retry after wait_us).
_ACQUIRE = """
if redis.replicate_commands then redis.replicate_commands() end
local n = tonumber(ARGV[6])
if #ARGV > 6 + n then redis.call('ZREM', KEYS[2], unpack(ARGV, 7 + n)) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local blocked = tonumber(redis.call('GET', KEYS[3]) or '0')
if blocked > now then return {0, blocked - now, 1} end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local free = tonumber(ARGV[3]) - redis.call('ZCARD', KEYS[2])
if free <= 0 then
  local wait = tonumber(ARGV[5])
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  local expires = tonumber(first[2]) - now
  if expires < wait then wait = expires end
  return {0, wait, 2}
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local tolerance = tonumber(ARGV[2])
if tat - tolerance > now then return {0, tat - tolerance - now, 3} end
local interval = tonumber(ARGV[1])
local ttl = tonumber(ARGV[4])
local expiry = string.format('%.0f', now + ttl)
local granted = 0
while granted < n and granted < free and tat - tolerance <= now do
  tat = tat + interval
  granted = granted + 1
  redis.call('ZADD', KEYS[2], expiry, ARGV[6 + granted])
end
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
local holders_px = math.ceil(ttl / 1000) + 1000
if redis.call('PTTL', KEYS[2]) < holders_px then redis.call('PEXPIRE', KEYS[2], holders_px) end
return {granted, 0, 0}
"""

# KEYS: blocked, tat. ARGV: seconds_us, tolerance_us. Block until max(existing, now + seconds)
# and empty the bucket for that moment. Returns the cool-down's remaining microseconds.
_PENALIZE = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local untl = now + tonumber(ARGV[1])
local blocked = tonumber(redis.call('GET', KEYS[1]) or '0')
if blocked > untl then untl = blocked end
local px = math.ceil((untl - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', untl), 'PX', px)
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
local empty_at = untl + tolerance
if empty_at > tat then
  local tat_px = px + math.ceil(tolerance / 1000)
  redis.call('SET', KEYS[2], string.format('%.0f', empty_at), 'PX', tat_px)
end
return untl - now
"""

_REDIS_ERRORS = (RedisError, OSError, TimeoutError)


def _parse_reply(reply: Any, asked: int) -> tuple[int, int, int]:
    """(holders granted, wait_us, why) from an acquisition script's reply."""
    if not isinstance(reply, list) or len(reply) != 3:
        raise RedisError(f"unexpected rate limiter script reply: {reply!r}")
    granted, wait, why = (int(part) for part in reply)
    if not 0 <= granted <= asked:
        raise RedisError(f"unexpected rate limiter script reply: {reply!r}")
    return granted, wait, why


class RedisRateLimiter:
    """The limiter shared through Redis by every api and worker process (module docstring)."""

    def __init__(
        self, redis: Redis, config: RateLimitConfig, *, prefix: str = REDIS_KEY_PREFIX
    ) -> None:
        self._redis = redis
        self._config = config
        self._prefix = prefix
        self._acquire_script = redis.register_script(_ACQUIRE)
        self._penalize_script = redis.register_script(_PENALIZE)
        self._fallback = LocalRateLimiter(config)
        self._waiting = _Waiting(time.monotonic, asyncio.sleep)
        self._released = _Signal()
        self._down_until: float | None = None
        interval = _interval(config, 1_000_000)
        self._args = (
            interval,
            _tolerance(config, 1_000_000),
            config.max_concurrency,
            math.ceil(config.slot_ttl * 1e6),
            min(max(interval, 10_000), 100_000),  # how often to look for a freed slot
        )
        self._background: set[asyncio.Task[None]] = set()
        # Holder ids: unique across processes (random prefix), cheap to make (counter).
        self._holder_prefix = uuid.uuid4().hex[:16]
        self._holder_numbers = itertools.count()
        # Per key: holders granted to this process and not yet taken by a waiter.
        self._granted: dict[str, deque[str]] = {}
        # Per key: holders given back here and not yet removed in Redis, and the timer that
        # removes them if no acquisition takes them along first.
        self._given_back: dict[str, list[str]] = {}
        self._flush_timers: dict[str, asyncio.TimerHandle] = {}

    def slot(self, key: str) -> contextlib.AbstractAsyncContextManager[None]:
        return _slot(functools.partial(self._acquire, key))

    async def penalize(self, key: str, seconds: float) -> None:
        if not _check_penalty(seconds):
            return
        self._give_back_granted(key)  # nobody sends on a grant from before the cool-down
        await self._fallback.penalize(key, seconds)  # honoured even if Redis fails later
        if self._redis_down():
            return
        tat, _, blocked = self._keys(key)
        try:
            async with asyncio.timeout(REDIS_CALL_TIMEOUT):
                await self._penalize_script(
                    keys=[blocked, tat], args=[math.ceil(seconds * 1e6), self._args[1]]
                )
        except _REDIS_ERRORS as exc:
            self._mark_down(exc)
        else:
            self._mark_up()

    def _keys(self, key: str) -> tuple[str, str, str]:
        base = f"{self._prefix}{{{key}}}:"
        return base + "tat", base + "holders", base + "blocked"

    def _redis_down(self) -> bool:
        return self._down_until is not None and time.monotonic() < self._down_until

    def _mark_down(self, exc: BaseException) -> None:
        if self._down_until is None:
            logger.warning(
                "Redis rate limiter unavailable (%s); limiting per process until it answers",
                type(exc).__name__,
            )
        self._down_until = time.monotonic() + REDIS_RETRY_INTERVAL

    def _mark_up(self) -> None:
        if self._down_until is not None:
            logger.info("Redis rate limiter available again; limiting across processes")
            self._down_until = None

    async def _acquire(self, key: str) -> Release:
        deadline = time.monotonic() + self._config.max_wait
        if not self._redis_down():
            try:
                async with self._waiting.turn(key, deadline):
                    holder = self._take_granted(key) or await self._acquire_shared(key, deadline)
            finally:
                if not self._waiting.waiting(key):
                    self._give_back_granted(key)  # the last waiter left: nobody will take them
            if holder is not None:
                return functools.partial(self._release, key, holder)
        return await self._fallback._acquire(key, max(0.0, deadline - time.monotonic()))

    def _take_granted(self, key: str) -> str | None:
        granted = self._granted.get(key)
        if not granted:
            return None
        holder = granted.popleft()
        if not granted:
            del self._granted[key]
        return holder

    def _give_back_granted(self, key: str) -> None:
        for holder in self._granted.pop(key, ()):
            self._release(key, holder)

    async def _acquire_shared(self, key: str, deadline: float) -> str | None:
        """A holder id granted by Redis (and grants for the waiters behind, kept for them);
        None when Redis failed (the caller falls back)."""
        keys = self._keys(key)
        while not self._redis_down():
            asked = min(MAX_GRANTS_PER_CALL, 1 + self._waiting.not_yet_woken(key))
            holders = [f"{self._holder_prefix}{next(self._holder_numbers)}" for _ in range(asked)]
            released = self._released.future(key)  # before asking, so no release is missed
            given_back = self._take_given_back(key)
            try:
                async with asyncio.timeout(REDIS_CALL_TIMEOUT):
                    reply = await self._acquire_script(
                        keys=keys, args=[*self._args, asked, *holders, *given_back]
                    )
                granted, wait, why = _parse_reply(reply, asked)
            except _REDIS_ERRORS as exc:
                # In case the grants happened and the reply was lost; and the holders given
                # back may not have been removed.
                self._discard(keys[1], [*holders, *given_back])
                self._mark_down(exc)
                return None
            except asyncio.CancelledError:
                self._discard(keys[1], [*holders, *given_back])
                raise
            self._mark_up()
            if granted:
                if granted > 1:
                    self._granted.setdefault(key, deque()).extend(holders[1:granted])
                    # All in this loop iteration, not one after the other as heads.
                    self._waiting.wake(key, granted - 1)
                return holders[0]
            seconds = wait / 1e6
            now = time.monotonic()
            if why == _FULL:
                if now >= deadline:
                    raise RateLimitTimeout(key=key)
                # Woken early when this process gives a slot back; otherwise poll.
                await self._waiting.until(released, min(now + seconds, deadline))
                continue
            if now + seconds > deadline:
                raise RateLimitTimeout(key=key, retry_after=seconds)
            await asyncio.sleep(seconds + random.uniform(0, MAX_JITTER))  # noqa: S311 (no secret)
        return None

    def _release(self, key: str, holder: str) -> None:
        """Note `holder` as given back (removed by the next acquisition or the flush timer) and
        wake this process's head waiter for `key`."""
        self._given_back.setdefault(key, []).append(holder)
        if key not in self._flush_timers:
            loop = asyncio.get_running_loop()
            self._flush_timers[key] = loop.call_later(RELEASE_FLUSH_DELAY, self._flush, key)
        self._released.fire(key)

    def _take_given_back(self, key: str) -> list[str]:
        timer = self._flush_timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        return self._given_back.pop(key, [])

    def _flush(self, key: str) -> None:
        self._flush_timers.pop(key, None)
        given_back = self._given_back.pop(key, [])
        if given_back:
            self._spawn(self._remove_holders(self._keys(key)[1], given_back))

    async def _remove_holders(self, holders: str, ids: list[str]) -> None:
        try:
            async with asyncio.timeout(REDIS_CALL_TIMEOUT):
                await cast("Awaitable[int]", self._redis.zrem(holders, *ids))
        except _REDIS_ERRORS as exc:
            logger.warning(
                "could not give back %d rate limiter slots (they expire in %.0f s): %s",
                len(ids),
                self._config.slot_ttl,
                type(exc).__name__,
            )

    def _discard(self, holders: str, ids: list[str]) -> None:
        """Remove `ids` in the background, for an attempt whose outcome is unknown."""

        async def discard() -> None:
            with contextlib.suppress(*_REDIS_ERRORS):
                async with asyncio.timeout(REDIS_CALL_TIMEOUT):
                    await cast("Awaitable[int]", self._redis.zrem(holders, *ids))

        self._spawn(discard())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def aclose(self) -> None:
        """Give back every noted slot now and wait for what runs in the background (before the
        Redis client closes)."""
        for key in list(self._granted):
            self._give_back_granted(key)
        for key in list(self._flush_timers):
            self._flush_timers[key].cancel()
            self._flush(key)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


def create_rate_limiter(redis: Redis | None, config: RateLimitConfig) -> RateLimiter:
    """The shared limiter when there is a Redis, else the per-process one (embedded mode)."""
    if redis is None:
        return LocalRateLimiter(config)
    return RedisRateLimiter(redis, config)
