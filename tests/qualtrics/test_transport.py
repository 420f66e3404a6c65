"""The shared AsyncClient's settings, and the streaming body cap."""

from collections.abc import AsyncIterator

import httpx
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
