"""The shared AsyncClient's settings, its aiohttp transport against a real server, and the
streaming body cap."""

import asyncio
from collections.abc import AsyncIterator, Callable

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
    QualtricsTransport,
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


# ---- the aiohttp transport, against a real server on a local port -------------------------


class Server:
    """A TCP server on a local port whose answer to each request is `answer(request head)`:
    raw bytes written, then the connection closed if `close` says so."""

    def __init__(self) -> None:
        self.heads: list[str] = []
        self.answer: Callable[[str], bytes] = lambda _: response(b"{}")
        self.close = False
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := (await reader.readuntil(b"\r\n\r\n")).decode():
                length = next(
                    (
                        int(line.split(":", 1)[1])
                        for line in head.split("\r\n")
                        if line.lower().startswith("content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                self.heads.append(head)
                writer.write(self.answer(head))
                await writer.drain()
                if self.close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()


def response(body: bytes, *, status: str = "200 OK", headers: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{headers}\r\n"
    ).encode() + body


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    server = Server()
    async with server as url:
        yield server, url


class TestAiohttpTransport:
    async def test_a_request_and_its_answer_pass_unchanged(
        self, server: tuple[Server, str]
    ) -> None:
        fake, url = server
        fake.answer = lambda _: response(b'{"result": 1}', headers="X-Seen: yes\r\n")
        async with create_http_client() as http:
            assert isinstance(http._transport, QualtricsTransport)
            answer = await http.post(
                f"{url}/API/v3/whoami",
                content=b'{"a": 1}',
                headers={"Authorization": "Bearer t", "Content-Type": "application/json"},
            )
            again = await http.get(f"{url}/API/v3/whoami")
        assert (answer.status_code, answer.content) == (200, b'{"result": 1}')
        assert answer.headers["X-Seen"] == "yes"
        assert again.status_code == 200
        first, second = fake.heads
        assert first.startswith("POST /API/v3/whoami HTTP/1.1\r\n")
        sent = dict(line.split(": ", 1) for line in first.split("\r\n")[1:] if line)
        sent = {name.lower(): value for name, value in sent.items()}
        assert sent["authorization"] == "Bearer t"
        assert sent["content-length"] == "8"
        assert sent["user-agent"] == USER_AGENT
        assert second.startswith("GET /API/v3/whoami HTTP/1.1\r\n")

    async def test_cookies_are_neither_kept_nor_sent(self, server: tuple[Server, str]) -> None:
        fake, url = server
        fake.answer = lambda _: response(b"{}", headers="Set-Cookie: session=brand-a; Path=/\r\n")
        async with create_http_client() as http:
            for _ in range(2):
                await http.get(f"{url}/API/v3/whoami")
        assert ["cookie:" in head.lower() for head in fake.heads] == [False, False]

    async def test_a_redirect_is_not_followed(self, server: tuple[Server, str]) -> None:
        fake, url = server
        fake.answer = lambda _: response(
            b"", status="302 Found", headers="Location: http://example.invalid/\r\n"
        )
        async with create_http_client() as http:
            answer = await http.get(f"{url}/API/v3/whoami")
        assert answer.status_code == 302
        assert len(fake.heads) == 1

    async def test_a_refused_connection_is_a_connect_error(self) -> None:
        async with Server() as url:
            pass  # closed again: nothing listens on that port now
        async with create_http_client() as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(f"{url}/API/v3/whoami")

    async def test_a_connection_dropped_before_the_answer_is_no_timeout(
        self, server: tuple[Server, str]
    ) -> None:
        fake, url = server
        fake.answer, fake.close = (lambda _: b""), True
        async with create_http_client() as http:
            with pytest.raises(httpx.TransportError) as raised:
                await http.get(f"{url}/API/v3/whoami")
        assert not isinstance(raised.value, httpx.TimeoutException)
        assert isinstance(raised.value, httpx.RemoteProtocolError)

    async def test_a_body_cut_short_is_a_read_error(self, server: tuple[Server, str]) -> None:
        fake, url = server
        fake.answer = lambda _: response(b"x" * 1000)[:-990]
        fake.close = True
        async with create_http_client() as http:
            with pytest.raises(httpx.TransportError) as raised:
                async with http.stream("GET", f"{url}/API/v3/whoami") as answer:
                    await read_capped(answer, 10_000)
        assert not isinstance(raised.value, httpx.TimeoutException)

    async def test_a_garbled_answer_is_a_protocol_error(self, server: tuple[Server, str]) -> None:
        fake, url = server
        fake.answer = lambda _: b"NOT HTTP AT ALL\r\n\r\n"
        async with create_http_client() as http:
            with pytest.raises(httpx.TransportError) as raised:
                await http.get(f"{url}/API/v3/whoami")
        assert not isinstance(raised.value, httpx.TimeoutException)

    async def test_a_silent_server_is_a_read_timeout(self, server: tuple[Server, str]) -> None:
        fake, url = server
        fake.answer = lambda _: b""  # never answers, keeps the connection open
        timeout = httpx.Timeout(connect=1, read=0.3, write=1, pool=1)
        async with create_http_client(timeout=timeout) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.get(f"{url}/API/v3/whoami")
