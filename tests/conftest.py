"""Shared fixtures: real PostgreSQL and SQLite databases built by Alembic, the app, and users.

Every API test runs against both backends (PostgreSQL first). Each test starts from empty
tables: rows are deleted after every test, so code paths that commit behave exactly as in
production.
"""

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from alembic import command
from cryptography.fernet import Fernet
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.auth.tokens import issue_access_token
from service.config import Settings
from service.connections.gateway import QualtricsGateway
from service.db import alembic_config
from service.kit.crypto import SecretBox
from service.main import create_app
from service.models import Base, Organization, Role, User
from service.organizations.service import organization_service
from service.qualtrics import create_http_client
from service.testing.fake_qualtrics import FakeQualtrics, create_fake_qualtrics_app

POSTGRES_SERVER_URL = os.environ.get(
    "CONNECTOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TEST_FERNET_KEY = Fernet.generate_key().decode()
TEST_JWT_SECRET = "test-jwt-secret-" + "x" * 32
TEST_PASSWORD = "correct horse battery staple"
QUALTRICS_CLIENT_ID = "connector-test-client"
QUALTRICS_CLIENT_SECRET = "canary-qualtrics-secret-5f3a9c1e7b"
QUALTRICS_SUBDOMAIN = "iad1"
FAKE_QUALTRICS_BASE = "http://fake-qualtrics.test/{subdomain}"
# Searched for in every response (`client`) and every log line (`no_secret_in_logs`).
CANARY_SECRETS = (QUALTRICS_CLIENT_SECRET, TEST_FERNET_KEY, TEST_JWT_SECRET, TEST_PASSWORD)


async def _recreate_postgres_database(name: str, *, drop_only: bool = False) -> None:
    connection = await asyncpg.connect(POSTGRES_SERVER_URL)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def _sqlalchemy_postgres_url(database: str) -> str:
    base = POSTGRES_SERVER_URL.replace("postgresql://", "postgresql+asyncpg://", 1)
    return base.rsplit("/", 1)[0] + f"/{database}"


class _LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(autouse=True)
def no_secret_in_logs() -> Iterator[None]:
    """Every log line of every test, at every level, is searched for the canary secrets."""
    capture = _LogCapture()
    capture.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(capture)
        root.setLevel(previous_level)
    leaked = [line for line in capture.lines for secret in CANARY_SECRETS if secret in line]
    assert leaked == [], f"secrets leaked into logs: {leaked[:3]}"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    # One database per test process, so parallel runs on one machine never collide.
    name = f"connector_test_{os.getpid()}"
    asyncio.run(_recreate_postgres_database(name))
    url = _sqlalchemy_postgres_url(name)
    command.upgrade(alembic_config(url), "head")
    yield url
    asyncio.run(_recreate_postgres_database(name, drop_only=True))


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("sqlite") / "connector.db"
    url = f"sqlite+aiosqlite:///{path}"
    command.upgrade(alembic_config(url), "head")
    return url


@pytest.fixture(scope="session", params=["postgres", "sqlite"])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "secret_keys": [SecretStr(TEST_FERNET_KEY)],
        "jwt_secret": SecretStr(TEST_JWT_SECRET),
        # API tests decide when deliveries are sent; tests of the embedded dispatcher opt in.
        "embedded_workers": 0,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application
        await _empty_tables(application)


async def _empty_tables(application: FastAPI) -> None:
    """Delete every row, children first, so the next test starts clean."""
    async with application.state.sessionmaker.begin() as session:
        for table in reversed(Base.metadata.sorted_tables):
            await session.execute(delete(table))


@pytest.fixture
def sessionmaker(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    return maker


async def _no_secret_in_response(response: httpx.Response) -> None:
    body = await response.aread()
    for secret in CANARY_SECRETS:
        assert secret.encode() not in body, f"a secret leaked into {response.request.url}"
        assert all(secret not in value for value in response.headers.values())


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The API in process; every response is checked for the canary secrets."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://testserver",
        event_hooks={"response": [_no_secret_in_response]},
    ) as http:
        yield http


@dataclass
class Account:
    """A user of a test organization, with ready-made request headers."""

    organization: Organization
    user: User
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


AccountFactory = Callable[..., Awaitable[Account]]


@pytest.fixture
def make_account(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> AccountFactory:
    """Create an organization (or reuse one) and a user in it, signed in."""

    async def factory(
        *,
        role: Role = Role.ADMIN,
        organization: Organization | None = None,
        qualtrics_enabled: bool = True,
        auth_time: datetime | None = None,
    ) -> Account:
        async with sessionmaker.begin() as session:
            if organization is None:
                created = await organization_service.create(
                    session,
                    SecretBox(settings.fernet_keys),
                    name=f"Org {uuid.uuid4().hex[:8]}",
                    qualtrics_enabled=qualtrics_enabled,
                )
                organization = created.organization
            user = await organization_service.create_user(
                session,
                organization_id=organization.id,
                email=f"{role.value}-{uuid.uuid4().hex[:8]}@example.com",
                password=TEST_PASSWORD,
                role=role,
            )
        token, _ = issue_access_token(
            secret=settings.jwt_secret.get_secret_value(),
            user_id=user.id,
            organization_id=organization.id,
            ttl=timedelta(minutes=15),
            auth_time=auth_time,
        )
        return Account(organization=organization, user=user, token=token)

    return factory


@pytest.fixture
async def admin(make_account: AccountFactory) -> Account:
    return await make_account(role=Role.ADMIN)


@pytest.fixture
async def viewer(make_account: AccountFactory, admin: Account) -> Account:
    return await make_account(role=Role.VIEWER, organization=admin.organization)


@pytest.fixture
async def other_admin(make_account: AccountFactory) -> Account:
    """An admin of a different organization, for isolation tests."""
    return await make_account(role=Role.ADMIN)


@pytest.fixture
async def qualtrics(app: FastAPI) -> AsyncIterator[FakeQualtrics]:
    """The fake Qualtrics, in process, wired into the app's gateway, with one account."""
    fake_app = create_fake_qualtrics_app()
    fake: FakeQualtrics = fake_app.state.fake
    fake.register_account(
        QUALTRICS_CLIENT_ID,
        QUALTRICS_CLIENT_SECRET,
        datacenter=QUALTRICS_SUBDOMAIN,
        brand_id="acme",
        user_name="api@acme.example",
    )
    gateway = QualtricsGateway(
        base_url_template=FAKE_QUALTRICS_BASE,
        box=app.state.secret_box,
        http=create_http_client(transport=httpx.ASGITransport(app=fake_app)),
    )
    original, app.state.qualtrics = app.state.qualtrics, gateway
    yield fake
    app.state.qualtrics = original
    await gateway.aclose()


def connection_body(**overrides: str) -> dict[str, str]:
    return {
        "client_id": QUALTRICS_CLIENT_ID,
        "client_secret": QUALTRICS_CLIENT_SECRET,
        "subdomain": QUALTRICS_SUBDOMAIN,
        **overrides,
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- the fake Qualtrics over HTTP -------------------------------------------------------------


@pytest.fixture(scope="session")
def fake_qualtrics_url() -> Iterator[str]:
    port = free_port()
    account = f"{QUALTRICS_CLIENT_ID}:{QUALTRICS_CLIENT_SECRET}:{QUALTRICS_SUBDOMAIN}:acme"
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        [
            sys.executable,
            "-m",
            "service.testing.fake_qualtrics",
            "--port",
            str(port),
            "--account",
            account,
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/_fake/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("the fake Qualtrics did not start")
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
async def fake_control(fake_qualtrics_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The fake's control surface; reset (config included) after each test."""
    async with httpx.AsyncClient(base_url=fake_qualtrics_url, timeout=10) as control:
        yield control
        await control.patch("/_fake/config", json={"latency_seconds": 0})
        await control.post("/_fake/reset")
        await control.post(
            "/_fake/accounts",
            json={
                "client_id": QUALTRICS_CLIENT_ID,
                "client_secret": QUALTRICS_CLIENT_SECRET,
                "datacenter": QUALTRICS_SUBDOMAIN,
                "brand_id": "acme",
            },
        )
