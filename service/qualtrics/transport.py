"""The shared `httpx.AsyncClient` for Qualtrics calls, and the body cap applied to every answer.

The process (api or worker) creates the client once at startup and closes it at shutdown
(style lesson 6); `QualtricsClient` objects borrow it. Nothing here is a module-level global.

Its connection pool is sharded. httpcore's pool re-examines every connection for every queued
request whenever a request starts or ends (`_assign_requests_to_connections`, with a `poll()`
per idle connection), so one pool's CPU cost per request grows with the square of the requests
in flight: one shared AsyncClient turns CPU-bound between 30 and 40 in flight (reliability-
facts §7; measured here: 5.5 ms CPU per request at 50 in flight, against 0.7 ms for a client
per task). `ShardedTransport` therefore spreads requests over several small pools of at most
`SHARD_CONNECTIONS` connections each, always to the shard with the fewest requests in flight,
which costs what a client per task costs while keeping connections alive and reused.

Timeouts are explicit: httpx's `read` timeout applies to each socket read, not to the whole
answer, so a server dripping one byte every few seconds would never trip it. The client
therefore also bounds every request with `REQUEST_DEADLINE` and reads at most
`MAX_RESPONSE_BYTES` of any body, streaming, so an oversized or endless answer costs at most
that much memory.
"""

import math
from collections.abc import AsyncIterator, Sequence

import httpx

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
MAX_KEEPALIVE_CONNECTIONS = 16
# Connections per pool: beyond ~8 in flight, httpcore's pool bookkeeping dominates.
SHARD_CONNECTIONS = 8
KEEPALIVE_EXPIRY = 30.0
USER_AGENT = "creovai-qualtrics-connector/0.1"


class ShardedTransport(httpx.AsyncBaseTransport):
    """Several connection pools behind one transport; each request goes to the pool with the
    fewest requests in flight (the first such, so a lightly used client keeps to one pool and
    reuses its connections)."""

    def __init__(self, shards: Sequence[httpx.AsyncBaseTransport]) -> None:
        if not shards:
            raise ValueError("a sharded transport needs at least one shard")
        self._shards = list(shards)
        self._in_flight = [0] * len(self._shards)

    @classmethod
    def create(
        cls,
        *,
        max_connections: int,
        max_keepalive_connections: int,
        shard_connections: int = SHARD_CONNECTIONS,
    ) -> "ShardedTransport":
        """`max_connections` in all, over pools of at most `shard_connections` each."""
        count = max(1, math.ceil(max_connections / shard_connections))
        per_shard = math.ceil(max_connections / count)
        keepalive = math.ceil(max_keepalive_connections / count)
        limits = httpx.Limits(
            max_connections=per_shard,
            max_keepalive_connections=min(per_shard, keepalive),
            keepalive_expiry=KEEPALIVE_EXPIRY,
        )
        return cls([httpx.AsyncHTTPTransport(limits=limits) for _ in range(count)])

    @property
    def shards(self) -> int:
        return len(self._shards)

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet closed (their body may still be streaming)."""
        return sum(self._in_flight)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        counts = self._in_flight
        index = counts.index(min(counts))
        counts[index] += 1
        try:
            response = await self._shards[index].handle_async_request(request)
        except BaseException:
            counts[index] -= 1
            raise
        if response.is_closed:  # read already (a test's transport): nothing more to wait for
            counts[index] -= 1
            return response
        response.stream = _CountedStream(response.stream, counts, index)
        return response

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


class _CountedStream(httpx.AsyncByteStream):
    """A response body that gives its request's place in the shard back when closed."""

    def __init__(
        self, stream: httpx.SyncByteStream | httpx.AsyncByteStream, counts: list[int], index: int
    ) -> None:
        if not isinstance(stream, httpx.AsyncByteStream):
            raise TypeError("an async transport returned a synchronous stream")
        self._stream = stream
        self._counts = counts
        self._index = index
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._counts[self._index] -= 1
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
    max_keepalive_connections: int = MAX_KEEPALIVE_CONNECTIONS,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """A client for Qualtrics: explicit timeouts and limits, redirects never followed.

    The connections are spread over pools of at most `SHARD_CONNECTIONS` (`ShardedTransport`).
    `transport` replaces that, e.g. to route to an in-process fake (`httpx.ASGITransport`).
    The caller owns the client and must `await client.aclose()` it.
    """
    return QualtricsHttpClient(
        timeout=timeout,
        # Svix treats 3xx as failure; a redirect could carry our bearer token elsewhere.
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        transport=transport
        or ShardedTransport.create(
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive_connections,
        ),
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
