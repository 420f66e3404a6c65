"""The shared AsyncClient's settings, and the streaming body cap."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from service.qualtrics import (
    InMemoryTokenCache,
    QualtricsClient,
    QualtricsCredentials,
    TokenManager,
    create_http_client,
)
from service.qualtrics.transport import (
    CONNECT_TIMEOUT,
    POOL_TIMEOUT,
    READ_TIMEOUT,
    USER_AGENT,
    WRITE_TIMEOUT,
    ShardedTransport,
    read_capped,
)
from tests.qualtrics.conftest import CLIENT_ID, SECRET, ok


async def test_client_settings() -> None:
    async with create_http_client() as http:
        assert http.follow_redirects is False
        assert http.timeout == httpx.Timeout(
            connect=CONNECT_TIMEOUT, read=READ_TIMEOUT, write=WRITE_TIMEOUT, pool=POOL_TIMEOUT
        )
        assert (CONNECT_TIMEOUT, READ_TIMEOUT, WRITE_TIMEOUT, POOL_TIMEOUT) == (5, 20, 10, 5)
        assert http.headers["User-Agent"] == USER_AGENT


async def test_custom_transport_reaches_an_in_process_fake() -> None:
    """E.g. a fake Qualtrics app behind httpx.ASGITransport, for end-to-end tests."""
    seen: list[str] = []

    def fake(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url}")
        if request.url.path.endswith("/oauth2/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        return ok({"brandId": "b", "userId": "u"})

    async with create_http_client(transport=httpx.MockTransport(fake)) as http:
        credentials = QualtricsCredentials(CLIENT_ID, SecretStr(SECRET), "iad1")
        client = QualtricsClient(http, credentials, tokens=TokenManager(InMemoryTokenCache()))
        assert (await client.whoami()).brand_id == "b"
    assert seen == [
        "POST https://iad1.qualtrics.com/oauth2/token",
        "GET https://iad1.qualtrics.com/API/v3/whoami",
    ]


async def test_read_capped() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"abcd"

    assert await read_capped(httpx.Response(200, content=b"abc"), 3) == (b"abc", False)
    assert await read_capped(httpx.Response(200, content=b"abcd"), 3) == (b"", True)
    assert await read_capped(httpx.Response(200, content=chunks()), 40) == (b"abcd" * 10, False)
    assert await read_capped(httpx.Response(200, content=chunks()), 6) == (b"abcdab", True)


class TestShardedTransport:
    async def test_connections_are_spread_over_small_pools(self) -> None:
        async with create_http_client(max_connections=50, max_keepalive_connections=50) as http:
            transport = http._transport
            assert isinstance(transport, ShardedTransport)
            assert transport.shards == 7  # ceil(50 / 8)
            pools = [shard._pool for shard in transport._shards]  # type: ignore[attr-defined]
            assert {pool._max_connections for pool in pools} == {8}
            assert sum(pool._max_connections for pool in pools) >= 50

    async def test_each_request_goes_to_the_least_busy_shard(self) -> None:
        seen: list[int] = []
        release, all_seen = asyncio.Event(), asyncio.Event()

        def shard(number: int) -> httpx.AsyncBaseTransport:
            async def handler(request: httpx.Request) -> httpx.Response:
                seen.append(number)
                if len(seen) == 5:
                    all_seen.set()
                await release.wait()
                return httpx.Response(200, content=b"ok")

            return httpx.MockTransport(handler)

        transport = ShardedTransport([shard(0), shard(1), shard(2)])
        async with httpx.AsyncClient(transport=transport) as http:
            # A lone request after another finished reuses the first shard (its connections).
            assert (await asyncio.gather(http.get("http://x/"), set_soon(release)))[0].text == "ok"
            assert (transport.in_flight, seen) == (0, [0])
            release.clear()
            pending = [asyncio.create_task(http.get("http://x/")) for _ in range(4)]
            await asyncio.wait_for(all_seen.wait(), 5)
            assert seen[1:] == [0, 1, 2, 0]
            assert transport.in_flight == 4
            release.set()
            await asyncio.gather(*pending)
        assert transport.in_flight == 0

    async def test_a_failed_request_gives_its_place_back(self) -> None:
        def fail(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        transport = ShardedTransport([httpx.MockTransport(fail)])
        async with httpx.AsyncClient(transport=transport) as http:
            with pytest.raises(httpx.ConnectError):
                await http.get("http://x/")
        assert transport.in_flight == 0

    async def test_a_streamed_body_holds_its_place_until_closed(self) -> None:
        class Body(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                yield b"abc"

        transport = ShardedTransport(
            [httpx.MockTransport(lambda _: httpx.Response(200, stream=Body()))]
        )
        async with httpx.AsyncClient(transport=transport) as http:
            async with http.stream("GET", "http://x/") as response:
                assert transport.in_flight == 1
                assert await response.aread() == b"abc"
            assert transport.in_flight == 0
        # An answer the transport read already gives its place back at once.
        transport = ShardedTransport(
            [httpx.MockTransport(lambda _: httpx.Response(200, content=b"abc"))]
        )
        async with (
            httpx.AsyncClient(transport=transport) as http,
            http.stream("GET", "http://x/"),
        ):
            assert transport.in_flight == 0

    def test_it_needs_a_shard(self) -> None:
        with pytest.raises(ValueError, match="at least one shard"):
            ShardedTransport([])


async def set_soon(event: asyncio.Event) -> None:
    await asyncio.sleep(0.01)
    event.set()


async def test_the_client_keeps_no_cookies_and_sends_none() -> None:
    """One client serves every Qualtrics account: a cookie set by one answer must never go
    out with a later request (and the API, token-authenticated, needs none)."""
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Cookie"))
        return httpx.Response(
            200, json={}, headers={"Set-Cookie": "session=brand-a; Domain=.qualtrics.com; Path=/"}
        )

    async with create_http_client(transport=httpx.MockTransport(answer)) as client:
        for brand in ("brand-a", "brand-b"):
            await client.get(f"https://{brand}.qualtrics.com/API/v3/whoami")
        assert len(client.cookies) == 0
        with pytest.raises(ValueError, match="no cookies"):
            client.cookies = {"session": "x"}  # type: ignore[assignment]

    assert seen == [None, None]
