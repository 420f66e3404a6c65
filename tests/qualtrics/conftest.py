"""Fixtures for the Qualtrics client: a controllable clock, respx routes, canned envelopes."""

import asyncio
import base64
import itertools
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr
from redis.asyncio import Redis

from service.qualtrics import (
    InMemoryTokenCache,
    QualtricsClient,
    QualtricsCredentials,
    TokenManager,
    create_http_client,
)

BASE = "https://iad1.qualtrics.com"
CLIENT_ID = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
SECRET = "Sup3r-S3cret-Client-Value-0123456789"
BASIC = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
SURVEY = "SV_5vaK6JpGtrf2Ldz"
BLOCK = "BL_0Di21uQq3eUD1D7"
REDIS_URL = "redis://127.0.0.1:6379/15"


class FakeClock:
    """Wall-clock seconds that only move when a test says so."""

    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def ok(result: Any = None, *, notice: str | None = None, status: int = 200) -> httpx.Response:
    """A Qualtrics success envelope (`meta` alone when there is no result)."""
    meta: dict[str, Any] = {"httpStatus": f"{status} - OK", "requestId": str(uuid.uuid4())}
    if notice:
        meta["notice"] = notice
    body: dict[str, Any] = {"meta": meta}
    if result is not None:
        body["result"] = result
    return httpx.Response(status, json=body)


def failure(
    status: int,
    code: str,
    message: str,
    *,
    request_id: str = "req-123",
    instance_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """A Qualtrics error envelope: `meta.error`, no `result`."""
    error = {"errorCode": code, "errorMessage": message}
    if instance_id:
        error["instanceId"] = instance_id
    body = {"meta": {"httpStatus": f"{status} - Error", "requestId": request_id, "error": error}}
    return httpx.Response(status, json=body, headers=headers)


class TokenEndpoint:
    """Issues `tok-1`, `tok-2`, ...; optionally slow, so that concurrent callers pile up."""

    def __init__(self, *, expires_in: int | None = 3600, delay: float = 0.0) -> None:
        self.expires_in = expires_in
        self.delay = delay
        self.counter = itertools.count(1)
        self.issued: list[str] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        token = f"tok-{next(self.counter)}"
        self.issued.append(token)
        body: dict[str, Any] = {"access_token": token, "token_type": "Bearer"}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return httpx.Response(200, json=body)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def credentials() -> QualtricsCredentials:
    return QualtricsCredentials(
        client_id=CLIENT_ID, client_secret=SecretStr(SECRET), subdomain="IAD1"
    )


@pytest.fixture
def tokens(clock: FakeClock) -> TokenManager:
    return TokenManager(InMemoryTokenCache(clock=clock), clock=clock)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # httpx's own transport: respx intercepts it (the production one runs on aiohttp, tested
    # against a real server in test_transport.py).
    async with create_http_client(transport=httpx.AsyncHTTPTransport()) as client:
        yield client


@pytest.fixture
def qualtrics_client(
    http: httpx.AsyncClient,
    credentials: QualtricsCredentials,
    tokens: TokenManager,
    clock: FakeClock,
) -> QualtricsClient:
    return QualtricsClient(http, credentials, tokens=tokens, clock=clock)


@pytest.fixture
def token_endpoint() -> TokenEndpoint:
    return TokenEndpoint()


@pytest.fixture
def routes(token_endpoint: TokenEndpoint) -> Iterator[respx.MockRouter]:
    """respx routes on the Qualtrics host, with a working token endpoint."""
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        router.post("/oauth2/token", name="token").mock(side_effect=token_endpoint)
        yield router


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    """db 15 of the local Redis; each test works under its own prefix and removes only that."""
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_prefix(redis: Redis) -> AsyncIterator[str]:
    prefix = f"test:qualtrics:{uuid.uuid4().hex}:"
    yield prefix
    keys = [key async for key in redis.scan_iter(match=prefix + "*")]
    if keys:
        await redis.delete(*keys)
