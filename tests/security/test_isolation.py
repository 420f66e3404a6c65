"""Who may call what: every route of the app, by every kind of caller.

The matrix is generated from `app.routes` (docs routes included), so a new route is covered
automatically; `EXPECTATIONS` says how each route is protected, and a route without an entry
fails `test_every_route_has_an_expectation` (and its own matrix test).

Callers, in this order (the owner last, since its writes change the seeded state):

- *anonymous*: no token, then a forged one (the owner's claims signed with another key):
  401 everywhere except the public routes.
- *viewer* of the owner organization: 403 on every write, 2xx on reads and on the read-only
  POST dry runs (`READ_ONLY_POSTS`); the audit log is admin-only (403).
- *other admin*, of another organization: 404 on every route that takes an id of ours;
  2xx on id-less routes, which act on its own organization, with none of our ids in the answer.
- *owner admin*: the statuses listed per route (never 401/403/404).

The webhook intake authenticates by signature, not by bearer token: every bearer-only call is
unsigned (401), the other organization signs with its own secret (401), the owner organization
signs with its own (202).

Before the owner's turn, the organization's configuration is read back and must be exactly
what it was: no rejected call changed anything. Every response of the matrix is searched for
the canary secrets (the `client` fixture), and so is every job payload (the `jobs` fixture: the
production arq dispatcher over a pool that records the serialized jobs).

Plus the production settings: a CORS wildcard is refused, no route answers an unsigned webhook
with 2xx, and `/docs` and `/openapi.json` answer 404 when `CONNECTOR_DOCS_ENABLED=false`.
"""

import enum
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.auth.tokens import ALGORITHM, AUDIENCE, ISSUER
from service.config import Settings, resolve_settings
from service.delivery.queue import job_deserializer
from service.interactions.schemas import INTERACTION_EXAMPLE
from service.kit.crypto import SecretBox
from service.main import create_app
from service.models import Base, WebhookSecret
from service.organizations.service import organization_service
from tests.conftest import (
    CANARY_SECRETS,
    TEST_FERNET_KEY,
    TEST_JWT_SECRET,
    TEST_PASSWORD,
    Account,
    connection_body,
    make_settings,
)
from tests.security.conftest import JobRecorder, Seed
from tests.setup.helpers import CATALOG, SELECTION
from tests.webhooks.helpers import event, interaction, organization_secret, signed_headers


class Access(enum.Enum):
    PUBLIC = "public"  # no authentication at all
    SIGNATURE = "signature"  # the webhook intake: a Standard Webhooks signature
    READ = "read"  # any signed-in user of the organization
    ADMIN_READ = "admin read"  # a read only admins may make
    READ_ONLY_POST = "read-only POST"  # a dry run: computes, changes nothing; viewers too
    WRITE = "write"  # admins only


class Caller(enum.Enum):
    ANONYMOUS = "anonymous"
    VIEWER = "viewer"
    OTHER_ADMIN = "other admin"
    OWNER = "owner admin"


# The POSTs that change nothing, which viewers may call (decided here, kept in this list).
READ_ONLY_POSTS = {
    ("POST", "/v1/integrations/{integration_id}/preview"),
    ("POST", "/v1/integrations/{integration_id}/triggers/{trigger_id}/test"),
}
# Path parameters naming one of the owner organization's objects.
OWNED_ID_PARAMETERS = {"integration_id", "trigger_id", "delivery_id", "organization_id"}

Body = Callable[["Context"], dict[str, Any]]


@dataclass(frozen=True)
class Rule:
    access: Access
    # What the owner organization's admin gets with the request below.
    owner: frozenset[int]
    # httpx keyword arguments (json, data, content, headers) for a valid request.
    body: Body | None = None


def rule(access: Access, *owner: int, body: Body | None = None) -> Rule:
    return Rule(access=access, owner=frozenset(owner), body=body)


@dataclass
class Context:
    """What a request of the matrix needs: the seed and the caller's account."""

    seed: Seed
    caller: Caller
    account: Account | None
    owner: Account
    secrets: dict[Caller, str] = field(default_factory=dict)


def _json(value: Any) -> Body:
    return lambda _: {"json": value}


def _named(prefix: str) -> Body:
    return lambda context: {
        "json": {"name": f"{prefix} {context.caller.value} {uuid.uuid4().hex[:6]}"}
    }


def _login(context: Context) -> dict[str, Any]:
    account = context.account or context.owner
    return {"data": {"username": account.user.email, "password": TEST_PASSWORD}}


def _webhook(context: Context) -> dict[str, Any]:
    body = event(interaction())
    if context.caller in context.secrets:
        headers = signed_headers(context.secrets[context.caller], body)
    else:
        headers = {"content-type": "application/json"}
    return {"content": body, "headers": headers}


def _replay(_: Context) -> dict[str, Any]:
    now = datetime.now(UTC)
    window = {"from": (now - timedelta(days=1)).isoformat(), "to": now.isoformat()}
    return {"json": {**window, "dry_run": False}}


EXPECTATIONS: dict[tuple[str, str], Rule] = {
    # docs (the matrix runs with them served; production serves them only when enabled)
    ("GET", "/openapi.json"): rule(Access.PUBLIC, 200),
    ("GET", "/docs"): rule(Access.PUBLIC, 200),
    ("GET", "/docs/oauth2-redirect"): rule(Access.PUBLIC, 200),
    ("GET", "/healthz"): rule(Access.PUBLIC, 200),
    ("GET", "/readyz"): rule(Access.PUBLIC, 200),
    ("GET", "/metrics"): rule(Access.PUBLIC, 200),
    ("POST", "/v1/auth/token"): rule(Access.PUBLIC, 200, body=_login),
    ("POST", "/v1/webhooks/{organization_id}/interactions"): rule(
        Access.SIGNATURE, 202, body=_webhook
    ),
    ("GET", "/v1/me"): rule(Access.READ, 200),
    ("GET", "/v1/catalog"): rule(Access.READ, 200),
    ("PUT", "/v1/catalog"): rule(Access.WRITE, 200, body=_json(CATALOG)),
    ("GET", "/v1/integrations"): rule(Access.READ, 200),
    ("POST", "/v1/integrations"): rule(Access.WRITE, 201, body=_named("Integration")),
    ("GET", "/v1/integrations/{integration_id}"): rule(Access.READ, 200),
    ("PATCH", "/v1/integrations/{integration_id}"): rule(Access.WRITE, 200, body=_named("Renamed")),
    ("DELETE", "/v1/integrations/{integration_id}"): rule(Access.WRITE, 204),
    ("GET", "/v1/integrations/{integration_id}/readiness"): rule(Access.READ, 200),
    ("POST", "/v1/integrations/{integration_id}/enable"): rule(Access.WRITE, 200),
    ("POST", "/v1/integrations/{integration_id}/disable"): rule(Access.WRITE, 200),
    ("PUT", "/v1/integrations/{integration_id}/qualtrics-connection"): rule(
        Access.WRITE, 200, body=lambda _: {"json": connection_body()}
    ),
    ("GET", "/v1/integrations/{integration_id}/qualtrics-connection"): rule(Access.READ, 200),
    ("DELETE", "/v1/integrations/{integration_id}/qualtrics-connection"): rule(Access.WRITE, 204),
    # The seeded integration has its project: creating another one conflicts.
    ("POST", "/v1/integrations/{integration_id}/project"): rule(
        Access.WRITE, 409, body=_json({"name": "Creovai insights"})
    ),
    ("GET", "/v1/integrations/{integration_id}/project"): rule(Access.READ, 200),
    ("PUT", "/v1/integrations/{integration_id}/data-fields"): rule(
        Access.WRITE, 200, body=_json({"fields": SELECTION})
    ),
    ("GET", "/v1/integrations/{integration_id}/data-fields"): rule(Access.READ, 200),
    ("POST", "/v1/integrations/{integration_id}/preview"): rule(
        Access.READ_ONLY_POST, 200, body=_json({"interaction": INTERACTION_EXAMPLE})
    ),
    ("GET", "/v1/integrations/{integration_id}/triggers"): rule(Access.READ, 200),
    ("POST", "/v1/integrations/{integration_id}/triggers"): rule(
        Access.WRITE,
        201,
        body=lambda context: {
            "json": {
                "name": f"Trigger {uuid.uuid4().hex[:6]}",
                "criteria": {"categories": {"any": ["Transfer"]}},
            }
        },
    ),
    ("GET", "/v1/integrations/{integration_id}/triggers/{trigger_id}"): rule(Access.READ, 200),
    ("PATCH", "/v1/integrations/{integration_id}/triggers/{trigger_id}"): rule(
        Access.WRITE, 200, body=_named("Trigger")
    ),
    ("DELETE", "/v1/integrations/{integration_id}/triggers/{trigger_id}"): rule(Access.WRITE, 204),
    ("POST", "/v1/integrations/{integration_id}/triggers/{trigger_id}/enable"): rule(
        Access.WRITE, 200
    ),
    ("POST", "/v1/integrations/{integration_id}/triggers/{trigger_id}/disable"): rule(
        Access.WRITE, 200
    ),
    ("POST", "/v1/integrations/{integration_id}/triggers/{trigger_id}/test"): rule(
        Access.READ_ONLY_POST, 200, body=_json({"limit": 10})
    ),
    ("GET", "/v1/integrations/{integration_id}/deliveries"): rule(Access.READ, 200),
    ("GET", "/v1/deliveries/{delivery_id}"): rule(Access.READ, 200),
    ("POST", "/v1/deliveries/{delivery_id}/retry"): rule(Access.WRITE, 202),
    ("POST", "/v1/integrations/{integration_id}/deliveries/discard-held"): rule(Access.WRITE, 200),
    ("POST", "/v1/integrations/{integration_id}/replay"): rule(Access.WRITE, 200, body=_replay),
    ("POST", "/v1/webhook-secrets/rotate"): rule(Access.WRITE, 200),
    ("GET", "/v1/audit-log"): rule(Access.ADMIN_READ, 200),
}


def app_routes(application: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, included routers flattened; HEAD is implied."""
    found: set[tuple[str, str]] = set()
    for route in iter_route_contexts(application.routes):
        path = route.path
        assert path is not None
        for method in route.methods or ():
            if method != "HEAD":
                found.add((method, path))
    return sorted(found, key=lambda item: (item[1], item[0]))


def _collection_app() -> FastAPI:
    # Building the app opens no connection; docs on, so their routes are in the matrix too.
    return create_app(make_settings("sqlite+aiosqlite:///:memory:", docs_enabled=True))


ROUTES = app_routes(_collection_app())


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, docs_enabled=True)


def test_every_route_has_an_expectation() -> None:
    missing = [route for route in ROUTES if route not in EXPECTATIONS]
    stale = [route for route in EXPECTATIONS if route not in ROUTES]
    assert missing == [], f"routes without an entry in EXPECTATIONS: {missing}"
    assert stale == [], f"EXPECTATIONS for routes that no longer exist: {stale}"


def test_the_expectations_agree_with_the_route_shapes() -> None:
    for (method, path), expected in EXPECTATIONS.items():
        where = f"{method} {path}"
        if (method, path) in READ_ONLY_POSTS:
            assert expected.access is Access.READ_ONLY_POST, where
        elif expected.access in (Access.READ, Access.ADMIN_READ):
            assert method == "GET", where
        elif expected.access is Access.WRITE:
            assert method in ("POST", "PUT", "PATCH", "DELETE"), where
        assert not expected.owner & {401, 403, 404}, where
        assert all(code < 500 for code in expected.owner), where


def _parameters(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _url(path: str, seed: Seed) -> str:
    values = seed.path_values
    unknown = [name for name in _parameters(path) if name not in values]
    assert unknown == [], f"{path}: no seeded value for {unknown}; add one to Seed.path_values"
    return path.format(**values)


def forged_token(owner: Account) -> str:
    """The owner's claims, signed with a key that is not the service's."""
    now = datetime.now(UTC)
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(owner.user.id),
        "org": str(owner.organization.id),
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "auth_time": int(now.timestamp()),
    }
    return jwt.encode(claims, "forged-" + "k" * 40, algorithm=ALGORITHM)


async def snapshot(
    client: httpx.AsyncClient,
    owner: Account,
    seed: Seed,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> dict[str, Any]:
    """The owner organization's configuration as its admin reads it (plus its webhook
    secrets), to show that rejected calls changed nothing."""
    base = f"/v1/integrations/{seed.integration_id}"
    reads = {
        "me": "/v1/me",
        "catalog": "/v1/catalog",
        "integrations": "/v1/integrations",
        "integration": base,
        "connection": f"{base}/qualtrics-connection",
        "project": f"{base}/project",
        "data_fields": f"{base}/data-fields",
        "triggers": f"{base}/triggers",
        "deliveries": f"{base}/deliveries",
        "delivery": f"/v1/deliveries/{seed.delivery_id}",
    }
    state: dict[str, Any] = {}
    for name, url in reads.items():
        response = await client.get(url, headers=owner.headers)
        state[name] = (response.status_code, response.headers.get("etag"), response.json())
    async with sessionmaker() as session:
        rows = await session.execute(
            select(WebhookSecret.id, WebhookSecret.expires_at).where(
                WebhookSecret.organization_id == seed.organization_id
            )
        )
        state["webhook_secrets"] = sorted((str(key), str(expires)) for key, expires in rows.all())
    return state


@dataclass
class Matrix:
    client: httpx.AsyncClient
    context: Context
    method: str
    path: str
    expected: Rule

    async def call(self, caller: Caller, account: Account | None, **extra: Any) -> httpx.Response:
        self.context.caller = caller
        self.context.account = account
        kwargs = self.expected.body(self.context) if self.expected.body else {}
        headers = dict(kwargs.pop("headers", {}))
        headers.update(extra.pop("headers", {}))
        if account is not None:
            headers.update(account.headers)
        return await self.client.request(
            self.method, _url(self.path, self.context.seed), headers=headers, **kwargs
        )

    @property
    def takes_our_id(self) -> bool:
        return bool(set(_parameters(self.path)) & OWNED_ID_PARAMETERS)

    def where(self, caller: Caller, response: httpx.Response) -> str:
        return (
            f"{caller.value}: {self.method} {self.path} -> {response.status_code} {response.text}"
        )


def assert_nothing_of_ours(response: httpx.Response, seed: Seed, where: str) -> None:
    """A successful answer to someone outside the organization names none of its objects."""
    ours = [*seed.path_values.values(), seed.interaction_id]
    assert [value for value in ours if value in response.text] == [], where


@pytest.fixture
async def other_secret(other_admin: Account, sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    return await organization_secret(sessionmaker, other_admin.organization.id)


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
async def test_access_matrix(
    method: str,
    path: str,
    client: httpx.AsyncClient,
    admin: Account,
    viewer: Account,
    other_admin: Account,
    other_secret: str,
    seed: Seed,
    jobs: JobRecorder,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    expected = EXPECTATIONS.get((method, path))
    if expected is None:
        pytest.fail(f"{method} {path} has no entry in EXPECTATIONS: say who may call it")
    context = Context(
        seed=seed,
        caller=Caller.ANONYMOUS,
        account=None,
        owner=admin,
        secrets={Caller.OTHER_ADMIN: other_secret, Caller.OWNER: seed.webhook_secret},
    )
    matrix = Matrix(client=client, context=context, method=method, path=path, expected=expected)
    access = expected.access
    before = await snapshot(client, admin, seed, sessionmaker)

    # Anonymous: no token, and a forged one.
    for headers in ({}, {"Authorization": f"Bearer {forged_token(admin)}"}):
        response = await matrix.call(Caller.ANONYMOUS, None, headers=headers)
        where = matrix.where(Caller.ANONYMOUS, response)
        if access is Access.PUBLIC:
            assert 200 <= response.status_code < 300, where
            assert_nothing_of_ours(response, seed, where)
        else:
            assert response.status_code == 401, where
            assert response.headers["content-type"].startswith("application/problem+json")

    # A viewer of the owner organization.
    response = await matrix.call(Caller.VIEWER, viewer)
    where = matrix.where(Caller.VIEWER, response)
    if access in (Access.PUBLIC, Access.READ, Access.READ_ONLY_POST):
        assert 200 <= response.status_code < 300, where
    elif access is Access.SIGNATURE:
        assert response.status_code == 401, where
    else:
        assert response.status_code == 403, where

    # An admin of another organization.
    response = await matrix.call(Caller.OTHER_ADMIN, other_admin)
    where = matrix.where(Caller.OTHER_ADMIN, response)
    if access is Access.SIGNATURE:
        assert response.status_code == 401, where
    elif matrix.takes_our_id:
        assert response.status_code == 404, where
    else:
        assert 200 <= response.status_code < 300, where
        assert_nothing_of_ours(response, seed, where)

    # Nothing any of them did changed the owner organization.
    assert await snapshot(client, admin, seed, sessionmaker) == before

    # The owner organization's admin.
    response = await matrix.call(Caller.OWNER, admin)
    assert response.status_code in expected.owner, matrix.where(Caller.OWNER, response)
    jobs.assert_no_secret()


async def test_job_payloads_carry_ids_only(
    client: httpx.AsyncClient,
    admin: Account,
    seed: Seed,
    jobs: JobRecorder,
) -> None:
    """Intake and retry enqueue production arq jobs whose bytes hold a delivery id and a
    request id: no secret, no interaction data."""
    retried = await client.post(f"/v1/deliveries/{seed.delivery_id}/retry", headers=admin.headers)
    assert retried.status_code == 202, retried.text
    assert len(jobs.payloads) == 2  # the seeded intake's, and the retry's
    for payload in jobs.payloads:
        for secret in CANARY_SECRETS:
            assert secret.encode() not in payload
        job = job_deserializer(payload)
        assert job["f"] == "delivery.send"
        assert [uuid.UUID(value) for value in job["a"]] == [seed.delivery_id]
        assert set(job["k"]) == {"request_id"}
        assert seed.interaction_id.encode() not in payload
    assert jobs.redis.job_ids == [f"delivery.send:{seed.delivery_id}"] * 2


# -- production settings ----------------------------------------------------------------------

POSTGRES_LIKE = "postgresql+asyncpg://connector@db.internal:5432/connector"


def test_production_settings_refuse_a_cors_wildcard() -> None:
    with pytest.raises(ValidationError, match="CORS"):
        make_settings(POSTGRES_LIKE, cors_origins=["https://admin.example.com", "*"])
    with pytest.raises(ValidationError, match="CORS"):
        make_settings(POSTGRES_LIKE, cors_origins="*")
    assert not make_settings(POSTGRES_LIKE).is_embedded


@pytest.fixture
def production_environment(monkeypatch: pytest.MonkeyPatch, postgres_url: str) -> Settings:
    """Settings read from the environment, as in a deployment: PostgreSQL, docs switched off."""
    for name in [name for name in os.environ if name.startswith("CONNECTOR_")]:
        monkeypatch.delenv(name)
    for name, value in {
        "CONNECTOR_DATABASE_URL": postgres_url,
        "CONNECTOR_SECRET_KEYS": TEST_FERNET_KEY,
        "CONNECTOR_JWT_SECRET": TEST_JWT_SECRET,
        "CONNECTOR_DOCS_ENABLED": "false",
        "CONNECTOR_EMBEDDED_WORKERS": "0",
    }.items():
        monkeypatch.setenv(name, value)
    settings = resolve_settings(Settings())
    assert not settings.is_embedded
    return settings


@pytest.fixture
async def production_app(production_environment: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(production_environment)
    async with application.router.lifespan_context(application):
        yield application
        async with application.state.sessionmaker.begin() as session:
            for table in reversed(Base.metadata.sorted_tables):
                await session.execute(delete(table))


@pytest.fixture
async def production_client(production_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=production_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def test_docs_are_not_served_when_disabled(production_client: httpx.AsyncClient) -> None:
    for url in ("/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc"):
        response = await production_client.get(url)
        assert response.status_code == 404, url
    assert (await production_client.get("/healthz")).status_code == 200


def _unsigned_attempts(body: bytes) -> Iterator[dict[str, str]]:
    yield {"content-type": "application/json"}
    yield {"content-type": "application/json", "webhook-id": "msg_1"}
    now = str(int(datetime.now(UTC).timestamp()))
    yield {"content-type": "application/json", "webhook-id": "msg_2", "webhook-timestamp": now}
    yield {
        "content-type": "application/json",
        "webhook-id": "msg_3",
        "webhook-timestamp": now,
        "webhook-signature": "v1,bm90IGEgc2lnbmF0dXJl",
    }
    forged = signed_headers("whsec_" + "A" * 43, body)
    yield forged


async def test_no_route_answers_an_unsigned_webhook_with_2xx(
    production_app: FastAPI, production_client: httpx.AsyncClient
) -> None:
    settings: Settings = production_app.state.settings
    async with production_app.state.sessionmaker.begin() as session:
        created = await organization_service.create(
            session, SecretBox(settings.fernet_keys), name="Production org", qualtrics_enabled=True
        )
    organization_id = created.organization.id
    body = event(interaction())
    # Every route of this app with every method it serves, plus old or guessed intake paths.
    values = {name: str(uuid.uuid4()) for name in OWNED_ID_PARAMETERS}
    values["organization_id"] = str(organization_id)
    targets = {path.format(**values) for _, path in ROUTES}
    targets |= {
        "/webhooks",
        "/v1/webhooks",
        "/v1/webhooks/interactions",
        f"/webhooks/{organization_id}/interactions",
        f"/v0/webhooks/{organization_id}/interactions",
        f"/v1/webhooks/{organization_id}",
        f"/v1/webhooks/{uuid.uuid4()}/interactions",
    }
    answered: list[str] = []
    for url in sorted(targets):
        for method in ("POST", "PUT", "PATCH"):
            for headers in _unsigned_attempts(body):
                response = await production_client.request(
                    method, url, content=body, headers=headers
                )
                assert response.status_code < 500, (method, url, response.text)
                if 200 <= response.status_code < 300:
                    answered.append(f"{method} {url} -> {response.status_code}")
    assert answered == []
    intake = f"/v1/webhooks/{organization_id}/interactions"
    response = await production_client.post(
        intake, content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 401
    # The intake accepts the same event once it is signed with the organization's secret.
    async with production_app.state.sessionmaker() as session:
        row = await session.scalar(
            select(WebhookSecret).where(WebhookSecret.organization_id == organization_id)
        )
        assert row is not None
        secret = SecretBox(settings.fernet_keys).decrypt(row.secret_encrypted)
    response = await production_client.post(
        intake, content=body, headers=signed_headers(secret, body)
    )
    assert 200 <= response.status_code < 300, response.text
    assert json.loads(response.text)["status"] in ("accepted", "duplicate")
