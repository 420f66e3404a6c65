"""Real processes for the worker tests: our own redis-server, the fake Qualtrics over HTTP, and
`python -m service worker` subprocesses, all against the PostgreSQL test database.

The shared Redis on 6379 is never touched: every test here talks to a redis-server this module
starts on a free port (no persistence, like the machine's), which tests may flush and restart.
"""

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.delivery.planner import candidates, plan
from service.interactions.schemas import INTERACTION_EXAMPLE
from service.interactions.schemas import Interaction as InteractionPayload
from service.main import create_app
from service.models import Delivery, DeliveryStatus, Interaction
from service.models.base import utc_now
from tests.conftest import (
    CANARY_SECRETS,
    TEST_FERNET_KEY,
    TEST_JWT_SECRET,
    Account,
    _empty_tables,
    free_port,
    make_settings,
)
from tests.setup.helpers import (
    add_trigger,
    connect,
    create_integration,
    create_project,
    put_catalog,
    save_fields,
)

ROOT = Path(__file__).resolve().parents[2]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


# -- our own redis-server ---------------------------------------------------------------------


class RedisServer:
    """A redis-server of this test session on a free port, without persistence."""

    # What a subclass changes to run with persistence (see tests/faults).
    persistence: tuple[str, ...] = ("--appendonly", "no")

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 (the machine's redis-server)
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *self.persistence,
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        pytest.fail("our redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def client(self) -> "redis.Redis[bytes]":
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def flushall(self) -> None:
        with self.client() as client:
            client.flushall()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    if redis_server.process is None:
        redis_server.start()
    redis_server.flushall()
    return redis_server.url


# -- the app: PostgreSQL, the fake over HTTP, no in-process delivery --------------------------


@pytest.fixture(scope="session")
def database_url(postgres_url: str) -> str:
    """The worker is the production path: PostgreSQL only (SQLite is the embedded test's)."""
    return postgres_url


@pytest.fixture
def settings(database_url: str, fake_qualtrics_url: str) -> Settings:
    # embedded_workers=0: this app only sets up and writes rows; the worker processes deliver.
    return make_settings(
        database_url, qualtrics_base_url=fake_qualtrics_url + "/{subdomain}", embedded_workers=0
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application
        await _empty_tables(application)


# -- an enabled integration and its deliveries ------------------------------------------------


@dataclass
class Integration:
    id: uuid.UUID
    organization_id: uuid.UUID
    survey_id: str


async def enabled_integration(client: httpx.AsyncClient, admin: Account) -> Integration:
    """Steps 1-5 through the API, against the fake over HTTP; the trigger matches everything."""
    await put_catalog(client, admin)
    integration_id = await create_integration(client, admin)
    await connect(client, admin, integration_id)
    project = await create_project(client, admin, integration_id)
    saved = await save_fields(client, admin, integration_id)
    assert saved.status_code == 200, saved.text
    await add_trigger(client, admin, integration_id, {})
    enabled = await client.post(f"/v1/integrations/{integration_id}/enable", headers=admin.headers)
    assert enabled.status_code == 200, enabled.text
    return Integration(
        id=uuid.UUID(integration_id),
        organization_id=admin.organization.id,
        survey_id=str(project["survey_id"]),
    )


async def plan_deliveries(
    sessionmaker: async_sessionmaker[AsyncSession], organization_id: uuid.UUID, count: int
) -> list[uuid.UUID]:
    """Store `count` interactions and their deliveries (pending, due now), via the planner."""
    ids: list[uuid.UUID] = []
    async with sessionmaker.begin() as session:
        integrations = await candidates(session, organization_id)
        planned = []
        for _ in range(count):
            payload = InteractionPayload.model_validate(
                {**INTERACTION_EXAMPLE, "id": f"call-{uuid.uuid4().hex[:12]}"}
            )
            interaction = Interaction(
                id=uuid.uuid4(),
                organization_id=organization_id,
                external_id=payload.id,
                payload=payload.model_dump(mode="json"),
                event_timestamp=utc_now(),
                started_at=payload.started_at,
            )
            session.add(interaction)
            planned.extend(plan(interaction, payload, integrations))
        await session.flush()  # the interactions first: deliveries refer to them
        assert [d.status for d in planned] == [DeliveryStatus.PENDING] * count
        session.add_all(planned)
        ids.extend(delivery.id for delivery in planned)
    return ids


async def count_by_status(
    sessionmaker: async_sessionmaker[AsyncSession], ids: list[uuid.UUID]
) -> dict[DeliveryStatus, int]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.id.in_(ids))
            .group_by(Delivery.status)
        )
        return dict(rows.all())


async def wait_until_delivered(
    sessionmaker: async_sessionmaker[AsyncSession],
    ids: list[uuid.UUID],
    *,
    within: float,
    worker: "WorkerProcess | None" = None,
) -> float:
    """Seconds until every delivery is `delivered`; fails with the counts otherwise."""
    started = time.monotonic()
    counts: dict[DeliveryStatus, int] = {}
    while time.monotonic() - started < within:
        counts = await count_by_status(sessionmaker, ids)
        if counts.get(DeliveryStatus.DELIVERED, 0) == len(ids):
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    log = worker.log()[-4000:] if worker is not None else ""
    pytest.fail(f"not all delivered after {within} s: {counts}\n{log}")


async def eventually(
    check: Callable[[], Awaitable[bool]], *, within: float, explain: Callable[[], str] = str
) -> None:
    """Poll `check` every 10 ms until it holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"still not true after {within} s\n{explain()[-3000:]}")
        await asyncio.sleep(0.01)


async def responses_by_key(control: httpx.AsyncClient, survey_id: str) -> dict[str, int]:
    """How many responses the fake stored per Idempotency-Key."""
    answer = await control.get(f"/_fake/surveys/{survey_id}/responses")
    assert answer.status_code == 200, answer.text
    counts: dict[str, int] = {}
    for response in answer.json():
        key = response["idempotencyKey"]
        counts[key] = counts.get(key, 0) + 1
    return counts


async def response_posts(control: httpx.AsyncClient, survey_id: str) -> int:
    """How many create-response requests reached the fake (repeats included)."""
    log = (await control.get("/_fake/requests", params={"limit": 10_000})).json()
    suffix = f"/surveys/{survey_id}/responses"
    return sum(1 for entry in log if entry["method"] == "POST" and entry["path"].endswith(suffix))


# -- `service worker` subprocesses ------------------------------------------------------------


@dataclass
class WorkerProcess:
    """`python -m service worker` with the test environment; its output goes to a file."""

    env: dict[str, str]
    logfile: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: float = field(default=0.0)

    def start(self) -> "WorkerProcess":
        with self.logfile.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", "worker"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.started_at = time.monotonic()
        return self

    def wait_ready(self, timeout: float = 20) -> None:
        """Until the worker logged that its startup (schema check, sweeper) is done."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "worker ready" in self.log():
                return
            if self.process is not None and self.process.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"the worker did not become ready:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


class Workers:
    """Starts workers for a test; every one is stopped, and its log checked for secrets."""

    def __init__(self, base_env: dict[str, str], workdir: Path) -> None:
        self.base_env = base_env
        self.workdir = workdir
        self.started: list[WorkerProcess] = []

    def start(self, *, ready: bool = True, **settings: str) -> WorkerProcess:
        env = dict(self.base_env)
        env.update({f"CONNECTOR_{name.upper()}": value for name, value in settings.items()})
        logfile = self.workdir / f"worker-{len(self.started)}.log"
        worker = WorkerProcess(env, logfile).start()
        self.started.append(worker)
        if ready:
            worker.wait_ready()
        return worker

    def close(self) -> None:
        for worker in self.started:
            worker.stop()
        for worker in self.started:
            log = worker.log()
            leaked = [secret for secret in CANARY_SECRETS if secret in log]
            assert leaked == [], f"secrets leaked into {worker.logfile}"


@pytest.fixture
def workers(
    app: FastAPI, settings: Settings, redis_url: str, fake_qualtrics_url: str, tmp_path: Path
) -> Iterator[Workers]:
    """Depends on `app`, so every worker is stopped before the tables are emptied."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONNECTOR_")}
    env.update(
        {
            "CONNECTOR_DATABASE_URL": settings.database_url,
            "CONNECTOR_REDIS_URL": redis_url,
            "CONNECTOR_QUALTRICS_BASE_URL": fake_qualtrics_url + "/{subdomain}",
            "CONNECTOR_SECRET_KEYS": TEST_FERNET_KEY,
            "CONNECTOR_JWT_SECRET": TEST_JWT_SECRET,
            # Short enough for tests: a killed worker's jobs come back within seconds.
            "CONNECTOR_JOB_TIMEOUT": "3",
            "CONNECTOR_JOB_COMPLETION_WAIT": "5",
            "CONNECTOR_SWEEPER_INTERVAL": "0.5",
            "CONNECTOR_WORKER_MAX_JOBS": "50",
            # Generous, so the limiter never decides a test's timing.
            "CONNECTOR_QUALTRICS_RATE_PER_SECOND": "500",
            "CONNECTOR_QUALTRICS_BURST": "50",
            "CONNECTOR_QUALTRICS_MAX_CONCURRENCY": "100",
        }
    )
    pool = Workers(env, tmp_path)
    yield pool
    pool.close()
