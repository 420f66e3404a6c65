"""OAuth access tokens: cached across processes, refreshed early, fetched once at a time.

Qualtrics issues client-credentials tokens for about an hour and no refresh token
(qualtrics-api.md §2b), so "refresh" means fetching a new one. `TokenManager` does that:

* A cached token is used until `REFRESH_MARGIN` (60 s) before it expires, so a request never
  leaves with a token that dies in flight. Short-lived tokens refresh at half their life.
* Concurrent callers in one process that need a token for the same key share a single fetch
  (single flight): a burst of deliveries after expiry costs one token request, not fifty, and
  a failing token endpoint is hit once per burst. Across processes the shared cache (Redis)
  means the fleet fetches roughly once per hour per credential.
* After Qualtrics answers 401 to a token, `refresh()` replaces exactly that token: if another
  caller already stored a newer one it is used as is, and the rejected one is deleted only if
  it is still the cached one, so a late 401 never evicts a fresh token.

The cache key is a SHA-256 over subdomain, client id, scope *and the client secret*, so no
credential appears in the key. The secret is in the hash because credentials are verified by
fetching a token: keyed on the client id alone, a wrong new secret would be "verified" by the
token the old secret obtained. A changed secret therefore starts a new cache entry, and the
old one ages out.

A cache that fails (Redis down) degrades to a miss: deliveries then fetch more tokens, but
they keep flowing, because losing Redis must lose nothing (design §2).

In front of the shared cache, each manager remembers the tokens it handed out until their
refresh time, so a busy worker does not read (and decrypt) the same token from Redis for every
request. Nothing is lost by that: a token another process replaced after a 401 is still
valid for this one until Qualtrics rejects it, and then `refresh()` reads the shared cache
again and takes the newer token from there.
"""

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

REFRESH_MARGIN = 60.0
# Tokens one manager remembers in memory at most (one per credential set in use).
MAX_REMEMBERED = 10_000
REDIS_KEY_PREFIX = "connector:qualtrics:token:"

Clock = Callable[[], float]

# Compare-and-delete, so a process only evicts the token it saw rejected.
_DELETE_IF_UNCHANGED = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What the token endpoint returned."""

    access_token: str = field(repr=False)
    expires_in: float


@dataclass(frozen=True, slots=True)
class CachedToken:
    """An access token and the wall-clock time (epoch seconds) at which to stop using it."""

    access_token: str = field(repr=False)
    refresh_at: float

    def to_json(self) -> str:
        return json.dumps({"access_token": self.access_token, "refresh_at": self.refresh_at})

    @classmethod
    def from_json(cls, raw: str) -> "CachedToken":
        data = json.loads(raw)
        token, refresh_at = data["access_token"], data["refresh_at"]
        if not isinstance(token, str) or not isinstance(refresh_at, int | float):
            raise ValueError("malformed cached token")
        return cls(access_token=token, refresh_at=float(refresh_at))


def token_cache_key(*, subdomain: str, client_id: str, client_secret: str, scope: str) -> str:
    """A stable key for one credential set that reveals none of it (see the module docstring)."""
    material = json.dumps(["qualtrics-token/v1", subdomain, client_id, scope, client_secret])
    return hashlib.sha256(material.encode()).hexdigest()


class TokenCache(Protocol):
    """Where tokens are kept between requests; shared by every process that can reach it."""

    async def get(self, key: str) -> CachedToken | None: ...

    async def set(self, key: str, token: CachedToken, ttl: float) -> None:
        """Store `token` for `ttl` seconds."""

    async def delete(self, key: str, *, only_if: str | None = None) -> None:
        """Remove the entry; with `only_if`, only while it still holds that access token."""


class TokenCipher(Protocol):
    """Encrypts tokens at rest in Redis; `service.kit.crypto.SecretBox` fits."""

    def encrypt(self, plaintext: str) -> str: ...

    def decrypt(self, token: str) -> str: ...


class InMemoryTokenCache:
    """A per-process cache: for the embedded mode and tests."""

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[CachedToken, float]] = {}

    async def get(self, key: str) -> CachedToken | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        token, deadline = entry
        if deadline <= self._clock():
            del self._entries[key]
            return None
        return token

    async def set(self, key: str, token: CachedToken, ttl: float) -> None:
        now = self._clock()
        # Drop expired entries here, so credentials that were replaced do not pile up.
        self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
        self._entries[key] = (token, now + ttl)

    async def delete(self, key: str, *, only_if: str | None = None) -> None:
        entry = self._entries.get(key)
        if entry is not None and (only_if is None or entry[0].access_token == only_if):
            del self._entries[key]


class RedisTokenCache:
    """Tokens in Redis, shared by every api and worker process; optionally encrypted."""

    def __init__(
        self,
        redis: "Redis",
        *,
        prefix: str = REDIS_KEY_PREFIX,
        cipher: TokenCipher | None = None,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._cipher = cipher

    def _decode(self, stored: str) -> CachedToken:
        text = self._cipher.decrypt(stored) if self._cipher is not None else stored
        return CachedToken.from_json(text)

    async def _get_stored(self, key: str) -> tuple[str, CachedToken] | None:
        """The stored text (as Redis holds it) and the token it decodes to; None on a miss."""
        try:
            raw: bytes | str | None = await self._redis.get(self._prefix + key)
        except RedisError as exc:
            logger.warning("token cache unavailable, fetching instead: %s", type(exc).__name__)
            return None
        if raw is None:
            return None
        try:
            stored = raw.decode() if isinstance(raw, bytes) else raw
            return stored, self._decode(stored)
        except Exception:  # an unreadable entry (old format, rotated key) is just a miss
            logger.warning("ignoring an unreadable cached Qualtrics token")
            return None

    async def get(self, key: str) -> CachedToken | None:
        found = await self._get_stored(key)
        return None if found is None else found[1]

    async def set(self, key: str, token: CachedToken, ttl: float) -> None:
        milliseconds = int(ttl * 1000)
        if milliseconds <= 0:
            return
        payload = token.to_json()
        if self._cipher is not None:
            payload = self._cipher.encrypt(payload)
        try:
            await self._redis.set(self._prefix + key, payload, px=milliseconds)
        except RedisError as exc:
            logger.warning("could not cache a Qualtrics token: %s", type(exc).__name__)

    async def delete(self, key: str, *, only_if: str | None = None) -> None:
        try:
            if only_if is None:
                await self._redis.delete(self._prefix + key)
                return
            found = await self._get_stored(key)
            if found is not None and found[1].access_token == only_if:
                evicted = self._redis.eval(_DELETE_IF_UNCHANGED, 1, self._prefix + key, found[0])
                await cast("Awaitable[int]", evicted)
        except RedisError as exc:
            logger.warning("could not evict a Qualtrics token: %s", type(exc).__name__)


TokenFetcher = Callable[[], Awaitable[TokenGrant]]


class TokenManager:
    """Hands out access tokens per cache key: cached, refreshed early, one fetch at a time.

    Create one per process (it holds the in-flight fetches) and share it between every
    `QualtricsClient`, whichever `httpx.AsyncClient` each of them uses.
    """

    def __init__(
        self,
        cache: TokenCache,
        *,
        clock: Clock = time.time,
        refresh_margin: float = REFRESH_MARGIN,
    ) -> None:
        self._cache = cache
        self._clock = clock
        self._margin = refresh_margin
        self._inflight: dict[str, asyncio.Task[CachedToken]] = {}
        # Tokens this manager handed out, until their refresh time (see the module docstring).
        self._remembered: dict[str, CachedToken] = {}

    async def get(self, key: str, fetch: TokenFetcher) -> CachedToken:
        """A token that is good for at least the refresh margin; fetched if there is none."""
        if key not in self._inflight:
            remembered = self._remembered.get(key)
            if remembered is not None and self._clock() < remembered.refresh_at:
                return remembered
            cached = await self._cache.get(key)
            if cached is not None and self._clock() < cached.refresh_at:
                self._remember(key, cached)
                return cached
        return await self._join(key, fetch)

    async def refresh(self, key: str, rejected: str, fetch: TokenFetcher) -> CachedToken:
        """A token other than `rejected`, which Qualtrics just answered 401 to."""
        self._forget(key, rejected)
        if key not in self._inflight:
            cached = await self._cache.get(key)
            if (
                cached is not None
                and cached.access_token != rejected
                and self._clock() < cached.refresh_at
            ):
                self._remember(key, cached)
                return cached
            await self._cache.delete(key, only_if=rejected)
        return await self._join(key, fetch)

    async def discard(self, key: str, rejected: str) -> None:
        """Forget `rejected` (if still cached) so the next caller fetches a new token."""
        self._forget(key, rejected)
        await self._cache.delete(key, only_if=rejected)

    def _remember(self, key: str, token: CachedToken) -> None:
        now = self._clock()
        if len(self._remembered) >= MAX_REMEMBERED:  # replaced credentials must not pile up
            self._remembered = {k: v for k, v in self._remembered.items() if v.refresh_at > now}
            if len(self._remembered) >= MAX_REMEMBERED:
                self._remembered.clear()
        self._remembered[key] = token

    def _forget(self, key: str, access_token: str) -> None:
        remembered = self._remembered.get(key)
        if remembered is not None and remembered.access_token == access_token:
            del self._remembered[key]

    async def _join(self, key: str, fetch: TokenFetcher) -> CachedToken:
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch_and_store(key, fetch))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._settle(key, done))
        # Shielded: a caller that gives up (cancelled) does not cancel the others' fetch.
        return await asyncio.shield(task)

    def _settle(self, key: str, task: "asyncio.Task[CachedToken]") -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so a fetch nobody awaits any more logs nothing

    async def _fetch_and_store(self, key: str, fetch: TokenFetcher) -> CachedToken:
        started = self._clock()
        grant = await fetch()
        lifetime = max(0.0, grant.expires_in)
        usable = lifetime - min(self._margin, lifetime / 2)
        token = CachedToken(access_token=grant.access_token, refresh_at=started + usable)
        await self._cache.set(key, token, ttl=usable)
        self._remember(key, token)
        return token
