"""The shared `httpx.AsyncClient` for Qualtrics calls, and the body cap applied to every answer.

The process (api or worker) creates the client once at startup and closes it at shutdown
(style lesson 6); `QualtricsClient` objects borrow it. Nothing here is a module-level global.

The client is httpx (its API, its request and response objects, respx in unit tests); the
sockets and the connection pool underneath are aiohttp's, through `httpx-aiohttp` (by an httpx
maintainer). httpcore's pool re-examines every connection for every queued request whenever a
request starts or ends, so one pool's CPU cost per request grows with the requests in flight:
one shared httpx client turns CPU-bound between 30 and 40 in flight (reliability-facts §7).
aiohttp's pool does not, and its HTTP/1.1 path costs less per request besides: measured here
against one local server answering after 50 ms, 50 in flight, 0.27-0.30 ms CPU per request
against 0.44 for httpx with a client per task; a worker went from ~1.13 to ~0.86 ms CPU per
delivery. Only HTTP/1.1 is spoken, as before.

`QualtricsTransport` adds what the adapter leaves out: aiohttp's own cookie jar is off (see
`_NoCookies`), and its errors arrive as httpx's own, precisely (the adapter reports a reset or
dropped connection as a connect *timeout*, and lets other aiohttp errors through as they are).

Timeouts are explicit: a `read` timeout applies to each socket read, not to the whole answer,
so a server dripping one byte every few seconds would never trip it. The client therefore also
bounds every request with `REQUEST_DEADLINE` and reads at most `MAX_RESPONSE_BYTES` of any body,
streaming, so an oversized or endless answer costs at most that much memory.
"""

import contextlib
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 20.0
WRITE_TIMEOUT = 10.0
POOL_TIMEOUT = 5.0
DEFAULT_TIMEOUT = httpx.Timeout(
    connect=CONNECT_TIMEOUT, read=READ_TIMEOUT, write=WRITE_TIMEOUT, pool=POOL_TIMEOUT
)
# The whole exchange, body included; below a worker job timeout of 60 s (reliability §3.4).
REQUEST_DEADLINE = 45.0
# Qualtrics answers are small JSON envelopes; a survey definition is the largest we read.
MAX_RESPONSE_BYTES = 1024 * 1024
# Connections to Qualtrics in all; a worker sizes this to its jobs (one request each).
MAX_CONNECTIONS = 32
KEEPALIVE_EXPIRY = 30.0
USER_AGENT = "creovai-qualtrics-connector/0.1"


class QualtricsTransport(AiohttpTransport):
    """httpx-aiohttp's transport on a session that keeps no cookies, with errors mapped to
    httpx's own classes precisely (module docstring)."""

    def __init__(self, *, max_connections: int) -> None:
        ssl_context = httpx.create_ssl_context()

        def session() -> aiohttp.ClientSession:  # made on first use, inside the event loop
            return aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=max_connections, keepalive_timeout=KEEPALIVE_EXPIRY, ssl=ssl_context
                ),
                cookie_jar=aiohttp.DummyCookieJar(),
            )

        super().__init__(client=session)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _precise_errors(request):
            response = await super().handle_async_request(request)
        response.stream = _PreciseStream(response.stream, request)
        return response


@contextlib.contextmanager
def _precise_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException as exc:
        cause = exc.__cause__
        if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, TimeoutError):
            # Refused, reset or dropped: no timeout (the adapter's ConnectTimeout).
            error = _connection_error(cause)
            raise error(str(cause) or type(cause).__name__, request=request) from cause
        raise
    except aiohttp.ClientError as exc:  # not mapped by the adapter: a malformed answer
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc


def _connection_error(cause: aiohttp.ClientConnectionError) -> type[httpx.TransportError]:
    if isinstance(cause, aiohttp.ClientConnectorError):
        return httpx.ConnectError
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError
    return httpx.ReadError


class _PreciseStream(httpx.AsyncByteStream):
    """A response body whose read errors are mapped like the request's."""

    def __init__(
        self, stream: httpx.SyncByteStream | httpx.AsyncByteStream, request: httpx.Request
    ) -> None:
        if not isinstance(stream, httpx.AsyncByteStream):
            raise TypeError("an async transport returned a synchronous stream")
        self._stream = stream
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _precise_errors(self._request):
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        with _precise_errors(self._request):
            await self._stream.aclose()


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing. The Qualtrics API authenticates with bearer tokens
    and needs no cookies; and one client serves every account, so a cookie one account's
    answer set must never ride along with another's requests. (It also saves parsing each
    answer's headers into a cookie jar: ~4 % of a worker's CPU per delivery.)"""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set_cookie_header(self, request: httpx.Request) -> None:
        return None


class QualtricsHttpClient(httpx.AsyncClient):
    """`httpx.AsyncClient` without cookies (`_NoCookies`)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: object) -> None:
        if cookies:
            raise ValueError("the Qualtrics client keeps no cookies")


_NO_COOKIES = _NoCookies()


def create_http_client(
    *,
    max_connections: int = MAX_CONNECTIONS,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """A client for Qualtrics: explicit timeouts and limits, redirects never followed.

    At most `max_connections` connections at once, over aiohttp (`QualtricsTransport`).
    `transport` replaces that, e.g. to route to an in-process fake (`httpx.ASGITransport`), or
    httpx's own `AsyncHTTPTransport` where respx intercepts it. The caller owns the client and
    must `await client.aclose()` it.
    """
    return QualtricsHttpClient(
        timeout=timeout,
        # Svix treats 3xx as failure; a redirect could carry our bearer token elsewhere.
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        transport=transport or QualtricsTransport(max_connections=max_connections),
    )


async def read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """Read at most `limit` bytes of a streamed body; return them and whether more was sent.

    A declared Content-Length over the limit is refused before reading anything. The cap
    applies to decoded bytes, so a compressed body cannot inflate past it either (beyond one
    network chunk's worth).
    """
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        return b"", True
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            return bytes(body[:limit]), True
    return bytes(body), False
