"""Token caches (in memory and a real Redis) and the TokenManager's refresh and single flight."""

import asyncio

import pytest
from cryptography.fernet import Fernet
from redis.asyncio import Redis

from service.kit.crypto import SecretBox
from service.qualtrics import tokens as tokens_module
from service.qualtrics.tokens import (
    CachedToken,
    InMemoryTokenCache,
    RedisTokenCache,
    TokenGrant,
    TokenManager,
    token_cache_key,
)
from tests.qualtrics.conftest import CLIENT_ID, SECRET, FakeClock


class Fetcher:
    """A token fetch that counts its calls and can be made slow or failing."""

    def __init__(self, *, expires_in: float = 3600, delay: float = 0.0) -> None:
        self.calls = 0
        self.expires_in = expires_in
        self.delay = delay
        self.error: Exception | None = None

    async def __call__(self) -> TokenGrant:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return TokenGrant(access_token=f"tok-{self.calls}", expires_in=self.expires_in)


class TestCacheKey:
    def test_reveals_no_credential_and_is_stable(self) -> None:
        key = token_cache_key(subdomain="iad1", client_id=CLIENT_ID, client_secret=SECRET, scope="")
        assert key == token_cache_key(
            subdomain="iad1", client_id=CLIENT_ID, client_secret=SECRET, scope=""
        )
        assert len(key) == 64
        assert CLIENT_ID not in key
        assert SECRET not in key

    def test_differs_per_subdomain_scope_and_secret(self) -> None:
        base = {"subdomain": "iad1", "client_id": CLIENT_ID, "client_secret": SECRET, "scope": ""}
        keys = {
            token_cache_key(**base),
            token_cache_key(**{**base, "subdomain": "fra1"}),
            token_cache_key(**{**base, "scope": "write:surveys"}),
            # A new secret must not reuse the old secret's token (credential verification).
            token_cache_key(**{**base, "client_secret": SECRET + "x"}),
            token_cache_key(**{**base, "client_id": CLIENT_ID + "x"}),
        }
        assert len(keys) == 5


class TestCachedToken:
    def test_repr_hides_the_token(self) -> None:
        assert "tok-secret" not in repr(CachedToken("tok-secret", 1.0))
        assert "tok-secret" not in repr(TokenGrant("tok-secret", 1.0))

    @pytest.mark.parametrize(
        "raw",
        ['{"access_token": 1, "refresh_at": 1}', '{"access_token": "t"}', "[]", "{", ""],
    )
    def test_malformed_json_is_refused(self, raw: str) -> None:
        with pytest.raises((ValueError, KeyError, TypeError)):
            CachedToken.from_json(raw)


class TestInMemoryTokenCache:
    async def test_ttl(self, clock: FakeClock) -> None:
        cache = InMemoryTokenCache(clock=clock)
        await cache.set("k", CachedToken("t", clock() + 100), ttl=100)
        assert await cache.get("k") == CachedToken("t", clock() + 100)
        clock.advance(100)
        assert await cache.get("k") is None

    async def test_delete_only_if_unchanged(self, clock: FakeClock) -> None:
        cache = InMemoryTokenCache(clock=clock)
        await cache.set("k", CachedToken("new", 0), ttl=100)
        await cache.delete("k", only_if="old")
        assert await cache.get("k") is not None
        await cache.delete("k", only_if="new")
        assert await cache.get("k") is None
        await cache.set("k", CachedToken("t", 0), ttl=100)
        await cache.delete("k")
        assert await cache.get("k") is None
        await cache.delete("missing", only_if="t")

    async def test_set_drops_expired_entries(self, clock: FakeClock) -> None:
        cache = InMemoryTokenCache(clock=clock)
        await cache.set("old", CachedToken("a", 0), ttl=10)
        clock.advance(11)
        await cache.set("new", CachedToken("b", 0), ttl=10)
        assert list(cache._entries) == ["new"]


class TestRedisTokenCache:
    async def test_round_trip_with_ttl(self, redis: Redis, redis_prefix: str) -> None:
        cache = RedisTokenCache(redis, prefix=redis_prefix)
        token = CachedToken("tok-abc", 1_750_000_100.5)
        await cache.set("k", token, ttl=100)
        assert await cache.get("k") == token
        ttl_ms = await redis.pttl(redis_prefix + "k")
        assert 99_000 < ttl_ms <= 100_000
        assert await cache.get("other") is None

    async def test_non_positive_ttl_is_not_stored(self, redis: Redis, redis_prefix: str) -> None:
        cache = RedisTokenCache(redis, prefix=redis_prefix)
        await cache.set("k", CachedToken("t", 0), ttl=0)
        assert await redis.exists(redis_prefix + "k") == 0

    async def test_works_with_decoded_responses(self, redis_prefix: str) -> None:
        redis = Redis.from_url("redis://127.0.0.1:6379/15", decode_responses=True)
        try:
            cache = RedisTokenCache(redis, prefix=redis_prefix)
            await cache.set("k", CachedToken("t", 5.0), ttl=10)
            assert await cache.get("k") == CachedToken("t", 5.0)
            await cache.delete("k", only_if="t")
            assert await cache.get("k") is None
        finally:
            await redis.aclose()

    async def test_delete_only_if_unchanged(self, redis: Redis, redis_prefix: str) -> None:
        cache = RedisTokenCache(redis, prefix=redis_prefix)
        await cache.set("k", CachedToken("new", 0), ttl=100)
        await cache.delete("k", only_if="old")
        assert await cache.get("k") == CachedToken("new", 0)
        await cache.delete("k", only_if="new")
        assert await cache.get("k") is None
        await cache.set("k", CachedToken("t", 0), ttl=100)
        await cache.delete("k")
        assert await redis.exists(redis_prefix + "k") == 0

    async def test_encrypted_at_rest(self, redis: Redis, redis_prefix: str) -> None:
        cache = RedisTokenCache(
            redis, prefix=redis_prefix, cipher=SecretBox([Fernet.generate_key().decode()])
        )
        await cache.set("k", CachedToken("tok-plain", 9.0), ttl=100)
        stored = await redis.get(redis_prefix + "k")
        assert stored is not None
        assert b"tok-plain" not in stored
        assert await cache.get("k") == CachedToken("tok-plain", 9.0)
        await cache.delete("k", only_if="tok-plain")
        assert await cache.get("k") is None

    async def test_unreadable_entry_is_a_miss(self, redis: Redis, redis_prefix: str) -> None:
        await redis.set(redis_prefix + "k", "not json")
        assert await RedisTokenCache(redis, prefix=redis_prefix).get("k") is None
        # Written under another key: unreadable, so a miss rather than an error.
        await RedisTokenCache(
            redis, prefix=redis_prefix, cipher=SecretBox([Fernet.generate_key().decode()])
        ).set("k", CachedToken("t", 0), ttl=100)
        other = RedisTokenCache(
            redis, prefix=redis_prefix, cipher=SecretBox([Fernet.generate_key().decode()])
        )
        assert await other.get("k") is None

    async def test_redis_down_degrades_to_a_miss(self, caplog: pytest.LogCaptureFixture) -> None:
        redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
        try:
            cache = RedisTokenCache(redis)
            await cache.set("k", CachedToken("t", 0), ttl=100)
            assert await cache.get("k") is None
            await cache.delete("k", only_if="t")
            await cache.delete("k")
            # And a manager over it still hands out tokens.
            fetch = Fetcher()
            assert (await TokenManager(cache).get("k", fetch)).access_token == "tok-1"
        finally:
            await redis.aclose()
        assert "token cache unavailable" in caplog.text

    async def test_shared_between_managers(self, redis: Redis, redis_prefix: str) -> None:
        """Two processes (managers) over one Redis fetch once between them."""
        first = TokenManager(RedisTokenCache(redis, prefix=redis_prefix))
        second = TokenManager(RedisTokenCache(redis, prefix=redis_prefix))
        fetch = Fetcher()
        assert (await first.get("k", fetch)).access_token == "tok-1"
        assert (await second.get("k", fetch)).access_token == "tok-1"
        assert fetch.calls == 1


class TestTokenManager:
    async def test_caches_until_the_refresh_margin(self, clock: FakeClock) -> None:
        manager = TokenManager(InMemoryTokenCache(clock=clock), clock=clock)
        fetch = Fetcher(expires_in=3600)
        assert (await manager.get("k", fetch)).access_token == "tok-1"
        clock.advance(3600 - 61)
        assert (await manager.get("k", fetch)).access_token == "tok-1"
        clock.advance(2)  # now 59 s before expiry: inside the 60 s margin
        assert (await manager.get("k", fetch)).access_token == "tok-2"
        assert fetch.calls == 2

    async def test_short_tokens_refresh_at_half_life(self, clock: FakeClock) -> None:
        manager = TokenManager(InMemoryTokenCache(clock=clock), clock=clock)
        fetch = Fetcher(expires_in=40)
        token = await manager.get("k", fetch)
        assert token.refresh_at == clock() + 20

    async def test_single_flight(self, tokens: TokenManager) -> None:
        fetch = Fetcher(delay=0.02)
        results = await asyncio.gather(*(tokens.get("k", fetch) for _ in range(50)))
        assert {token.access_token for token in results} == {"tok-1"}
        assert fetch.calls == 1

    async def test_keys_do_not_share_a_flight(self, tokens: TokenManager) -> None:
        fetch = Fetcher(delay=0.01)
        await asyncio.gather(tokens.get("a", fetch), tokens.get("b", fetch))
        assert fetch.calls == 2

    async def test_a_failure_is_shared_once_then_retried(self, tokens: TokenManager) -> None:
        fetch = Fetcher(delay=0.01)
        fetch.error = RuntimeError("token endpoint down")
        results = await asyncio.gather(
            *(tokens.get("k", fetch) for _ in range(10)), return_exceptions=True
        )
        assert all(isinstance(result, RuntimeError) for result in results)
        assert fetch.calls == 1
        fetch.error = None
        assert (await tokens.get("k", fetch)).access_token == "tok-2"

    async def test_a_cancelled_caller_does_not_cancel_the_fetch(self, tokens: TokenManager) -> None:
        fetch = Fetcher(delay=0.05)
        impatient = asyncio.create_task(tokens.get("k", fetch))
        patient = asyncio.create_task(tokens.get("k", fetch))
        await asyncio.sleep(0.01)
        impatient.cancel()
        assert (await patient).access_token == "tok-1"
        with pytest.raises(asyncio.CancelledError):
            await impatient
        assert fetch.calls == 1

    async def test_refresh_replaces_the_rejected_token(self, tokens: TokenManager) -> None:
        fetch = Fetcher()
        first = await tokens.get("k", fetch)
        second = await tokens.refresh("k", first.access_token, fetch)
        assert second.access_token == "tok-2"
        assert (await tokens.get("k", fetch)).access_token == "tok-2"

    async def test_refresh_uses_a_newer_token_someone_else_stored(
        self, tokens: TokenManager
    ) -> None:
        fetch = Fetcher()
        await tokens.get("k", fetch)
        await tokens.refresh("k", "tok-1", fetch)  # another caller already refreshed
        assert (await tokens.refresh("k", "tok-1", fetch)).access_token == "tok-2"
        assert fetch.calls == 2

    async def test_concurrent_refreshes_fetch_once(self, tokens: TokenManager) -> None:
        fetch = Fetcher(delay=0.01)
        await tokens.get("k", fetch)
        fetch.delay = 0.02
        results = await asyncio.gather(*(tokens.refresh("k", "tok-1", fetch) for _ in range(20)))
        assert {token.access_token for token in results} == {"tok-2"}
        assert fetch.calls == 2

    async def test_discard_only_removes_the_named_token(self, tokens: TokenManager) -> None:
        fetch = Fetcher()
        await tokens.get("k", fetch)
        await tokens.discard("k", "tok-0")
        assert (await tokens.get("k", fetch)).access_token == "tok-1"
        await tokens.discard("k", "tok-1")
        assert (await tokens.get("k", fetch)).access_token == "tok-2"


class CountingCache(InMemoryTokenCache):
    """Counts how often the shared cache is read."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.reads = 0

    async def get(self, key: str) -> CachedToken | None:
        self.reads += 1
        return await super().get(key)


class TestRememberedTokens:
    async def test_a_token_handed_out_is_not_read_again_until_its_refresh(
        self, clock: FakeClock
    ) -> None:
        cache = CountingCache(clock)
        manager = TokenManager(cache, clock=clock)
        fetch = Fetcher(expires_in=3600)
        assert (await manager.get("k", fetch)).access_token == "tok-1"
        reads = cache.reads
        for _ in range(5):
            assert (await manager.get("k", fetch)).access_token == "tok-1"
        assert cache.reads == reads  # from memory
        clock.advance(3600 - 59)  # inside the refresh margin
        assert (await manager.get("k", fetch)).access_token == "tok-2"
        assert fetch.calls == 2

    async def test_a_token_from_the_shared_cache_is_remembered(self, clock: FakeClock) -> None:
        cache = CountingCache(clock)
        fetch = Fetcher()
        await TokenManager(cache, clock=clock).get("k", fetch)  # another process fetched
        manager = TokenManager(cache, clock=clock)
        await manager.get("k", fetch)
        reads = cache.reads
        await manager.get("k", fetch)
        assert (cache.reads, fetch.calls) == (reads, 1)

    async def test_after_a_401_the_newer_shared_token_is_used(self, clock: FakeClock) -> None:
        """Another process replaced the token; this one learns it from the 401."""
        cache = CountingCache(clock)
        fetch = Fetcher()
        this, other = TokenManager(cache, clock=clock), TokenManager(cache, clock=clock)
        assert (await this.get("k", fetch)).access_token == "tok-1"
        assert (await other.refresh("k", "tok-1", fetch)).access_token == "tok-2"
        assert (await this.get("k", fetch)).access_token == "tok-1"  # still remembered
        assert (await this.refresh("k", "tok-1", fetch)).access_token == "tok-2"
        assert (await this.get("k", fetch)).access_token == "tok-2"
        assert fetch.calls == 2

    async def test_a_discarded_token_is_forgotten(self, clock: FakeClock) -> None:
        manager = TokenManager(CountingCache(clock), clock=clock)
        fetch = Fetcher()
        await manager.get("k", fetch)
        await manager.discard("k", "tok-1")
        assert (await manager.get("k", fetch)).access_token == "tok-2"

    async def test_memory_is_bounded(
        self, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(tokens_module, "MAX_REMEMBERED", 3)
        manager = TokenManager(InMemoryTokenCache(clock=clock), clock=clock)
        for key in "abcde":
            await manager.get(key, Fetcher())
        assert len(manager._remembered) <= 3
