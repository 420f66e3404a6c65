"""The shared `httpx.AsyncClient` for Qualtrics calls, and the body cap applied to every answer.

The process (api or worker) creates the client once at startup and closes it at shutdown
(style lesson 6); `QualtricsClient` objects borrow it. Nothing here is a module-level global:
one shared AsyncClient turns CPU-bound at about 30-40 requests in flight (reliability-facts
§7), so a worker that needs more can create several and spread `QualtricsClient`s over them.

Timeouts are explicit: httpx's `read` timeout applies to each socket read, not to the whole
answer, so a server dripping one byte every few seconds would never trip it. The client
therefore also bounds every request with `REQUEST_DEADLINE` and reads at most
`MAX_RESPONSE_BYTES` of any body, streaming, so an oversized or endless answer costs at most
that much memory.
"""

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
# Beyond ~32 in flight one pool costs more CPU than it saves (reliability-facts §7): shard.
MAX_CONNECTIONS = 32
MAX_KEEPALIVE_CONNECTIONS = 16
KEEPALIVE_EXPIRY = 30.0
USER_AGENT = "creovai-qualtrics-connector/0.1"


def create_http_client(
    *,
    max_connections: int = MAX_CONNECTIONS,
    max_keepalive_connections: int = MAX_KEEPALIVE_CONNECTIONS,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """A client for Qualtrics: explicit timeouts and limits, redirects never followed.

    `transport` lets tests and demos route to an in-process fake (e.g. `httpx.ASGITransport`).
    The caller owns the client and must `await client.aclose()` it.
    """
    return httpx.AsyncClient(
        timeout=timeout,
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive_connections,
            keepalive_expiry=KEEPALIVE_EXPIRY,
        ),
        # Svix treats 3xx as failure; a redirect could carry our bearer token elsewhere.
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        transport=transport,
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
