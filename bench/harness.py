"""What every benchmark needs, as separate processes, torn down afterwards (issue 6).

    async with Stack(database="postgres", fake_latency=0.05) as stack:
        setup = await stack.setup(integrations=3)      # starts the api if it is not running
        await stack.start_workers(1, worker_max_jobs=50)
        headers, body = signed_webhook(setup)  # for stack.api_url + webhook_path(setup)
        await stack.wait_delivered(3, within=30)
        ...

`Stack` starts, each as its own process:

- a database: a fresh PostgreSQL database (created on `BENCH_POSTGRES_URL`, default
  `postgresql://postgres@127.0.0.1:5432/postgres`, dropped at the end) or a SQLite file in a
  temporary directory, migrated with `python -m service migrate`;
- a redis-server of its own on a free port, without persistence (`--save "" --appendonly no`);
- the fake Qualtrics (`python -m service.testing.fake_qualtrics`) with the configured latency
  and per-brand rate limit, and a request log long enough for a benchmark;
- on request, `python -m service api` (one uvicorn worker) and `python -m service worker`
  processes with the stack's `CONNECTOR_*` environment (`stack.env`), plus overrides.

Everything it started is stopped again when the block ends, also on an exception or Ctrl+C
(the children run in sessions of their own, so the terminal's SIGINT reaches only the
benchmark, which then stops them in order; if the benchmark itself is killed, the kernel sends
them SIGTERM: `PR_SET_PDEATHSIG`). Processes are started from the thread that runs the event
loop, which must outlive them (the death signal follows the thread that started a child).

Alongside: `Stack.setup()` creates an organization, its admin and N integrations walked through
the five setup steps over the public API, each on a Qualtrics account of its own at the fake;
`signed_webhook()` / `WebhookFactory` make signed `interaction.completed` events fast;
`plan_deliveries()` + `enqueue()` queue deliveries without the api (as intake's planner and
dispatcher would); `quiesce_database()` settles PostgreSQL after a bulk load; and the stack
counts deliveries in the database (`delivery_counts`, `delivered_times`, `wait_delivered`) and
responses and requests at the fake (`fake_responses`, `fake_requests` with arrival times to
the microsecond, `fake_stats`, `clear_fake_responses` between rounds).
"""

import asyncio
import base64
import contextlib
import ctypes
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import httpx
from cryptography.fernet import Fernet
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from service.db import create_engine, create_sessionmaker
from service.delivery.planner import candidates, plan
from service.delivery.queue import ArqDispatcher
from service.interactions.schemas import Interaction as InteractionPayload
from service.kit.crypto import SecretBox
from service.models import Delivery, DeliveryStatus, Interaction, Role
from service.models.base import utc_now
from service.organizations.service import organization_service
from service.testing.fake_qualtrics.config import RateLimit

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
POSTGRES_SERVER_URL = os.environ.get(
    "BENCH_POSTGRES_URL",
    os.environ.get("CONNECTOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
)
# One subdomain (datacenter) for every fake account; brands tell the accounts apart.
SUBDOMAIN = "iad1"
ADMIN_EMAIL = "admin@bench.example"
# How long a started process may take to become ready.
READY_TIMEOUT = 30.0

Database = Literal["postgres", "sqlite"]
# Where the one trigger that matches every generated interaction sits in each integration's
# list (triggers are evaluated in order, the first match wins), or "none": no trigger matches.
Match = Literal["last", "first", "none"]


# -- processes --------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_libc: ctypes.CDLL | None
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # not Linux: no death signal, the `async with` still stops everything
    _libc = None


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the benchmark process dies (Linux)."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Proc:
    """A child process whose stdout and stderr go to `logfile` (appended: a process started again
    under the same name shares the file, but `log()` reads only its own part)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        logfile: Path,
        cwd: Path = ROOT,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.logfile = logfile
        self.started_at = time.monotonic()
        with logfile.open("ab") as log:
            self._log_offset = log.tell()
            self.process = subprocess.Popen(  # noqa: S603 (our own commands)
                self.argv,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def __repr__(self) -> str:
        return f"Proc({self.name!r}, pid={self.pid}, alive={self.alive})"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def rss_mib(self) -> float:
        """Resident memory (VmRSS) in MiB; 0 once the process has ended."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return 0.0
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        """User + system CPU time the process used so far (0 once it has been reaped)."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return 0.0
        fields = stat.rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        return ticks / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        """What this process wrote (not an earlier process's "worker ready" in the same file)."""
        try:
            with self.logfile.open("rb") as log:
                log.seek(self._log_offset)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def send_signal(self, signum: signal.Signals) -> None:
        if self.alive:
            self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self, signum: signal.Signals = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send `signum` and wait up to `timeout` s for the exit, then SIGKILL; the exit code."""
        if self.alive:
            self.process.send_signal(signum)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(timeout=10)


async def _until(
    ready: Callable[[], Awaitable[bool]], proc: Proc, *, what: str, within: float = READY_TIMEOUT
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, OSError, RedisError):
            if await ready():
                return
        if not proc.alive:
            break
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{what} did not become ready; its log:\n{proc.log()[-4000:]}")


# -- the stack ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeAccount:
    """An OAuth client registered at the fake Qualtrics."""

    client_id: str
    client_secret: str = field(repr=False)
    subdomain: str
    brand_id: str


@dataclass(frozen=True)
class IntegrationSetup:
    id: uuid.UUID
    survey_id: str
    account: FakeAccount
    matching_trigger: str | None  # the name of the trigger every generated interaction matches

    @property
    def brand_id(self) -> str:
        return self.account.brand_id


@dataclass(frozen=True)
class Setup:
    """An organization with enabled integrations, as `Stack.setup()` left it."""

    organization_id: uuid.UUID
    webhook_secret: str = field(repr=False)
    admin_headers: dict[str, str] = field(repr=False)
    integrations: tuple[IntegrationSetup, ...]
    fields: tuple[dict[str, str], ...]

    @property
    def integration_ids(self) -> list[uuid.UUID]:
        return [integration.id for integration in self.integrations]

    @property
    def survey_ids(self) -> list[str]:
        return [integration.survey_id for integration in self.integrations]

    @property
    def brand_ids(self) -> list[str]:
        return sorted({integration.brand_id for integration in self.integrations})


class Stack:
    """The processes a benchmark runs against; see the module docstring."""

    def __init__(
        self,
        database: Database = "postgres",
        fake_latency: float = 0.05,
        fake_rate_limit: float | RateLimit | None = None,
        *,
        fake_request_log: int = 200_000,
        keep_workdir: bool = False,
    ) -> None:
        """`fake_rate_limit`: requests per second per brand at the fake (a token bucket holding
        one second's worth), or a full `RateLimit`; None: the fake never answers 429."""
        if database not in ("postgres", "sqlite"):
            raise ValueError(f"database must be 'postgres' or 'sqlite', not {database!r}")
        self.database: Database = database
        self.fake_latency = fake_latency
        self.fake_rate_limit: RateLimit | None = (
            RateLimit(requests_per_second=fake_rate_limit)
            if isinstance(fake_rate_limit, int | float)
            else fake_rate_limit
        )
        self.fake_request_log = fake_request_log
        self.keep_workdir = keep_workdir
        self.workdir = Path(tempfile.mkdtemp(prefix="bench-"))
        self.database_url = ""
        self.redis_url = ""
        self.fake_url = ""
        self.api_url = ""
        self.env: dict[str, str] = {}
        self.processes: list[Proc] = []
        self.api_process: Proc | None = None
        self.workers: list[Proc] = []
        self._fake: httpx.AsyncClient | None = None
        self._engine: AsyncEngine | None = None
        self._sessionmaker: async_sessionmaker[AsyncSession] | None = None
        self._postgres_database: str | None = None
        self._redis_process: Proc | None = None
        self._fake_process: Proc | None = None
        self._secret_keys = Fernet.generate_key().decode()
        self._sigterm_handled = False

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._handle_sigterm()
        try:
            await self._start()
        except BaseException:
            await self._stop()
            raise
        return self

    def _handle_sigterm(self) -> None:
        """SIGTERM (a CI timeout, `kill`) cancels the benchmark like Ctrl+C does, so the block
        still stops what it started and drops its database."""
        task = asyncio.current_task()
        if task is None:
            return
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
            self._sigterm_handled = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Shielded: a Ctrl+C (cancellation) must not leave processes or a database behind.
        try:
            await asyncio.shield(self._stop())
        finally:
            if self._sigterm_handled:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)

    async def _start(self) -> None:
        await self._start_redis()
        await self._start_fake()
        await self._create_database()
        self.env = self._environment()
        self._migrate()
        self._engine = create_engine(self.database_url)
        self._sessionmaker = create_sessionmaker(self._engine)

    async def _stop(self) -> None:
        for proc in reversed(self.processes):
            if proc is self._redis_process:
                continue  # last: workers drain into it
            with contextlib.suppress(Exception):
                proc.stop(timeout=20)
        if self._redis_process is not None:
            with contextlib.suppress(Exception):
                self._redis_process.stop(timeout=10)
        if self._fake is not None:
            with contextlib.suppress(Exception):
                await self._fake.aclose()
        if self._engine is not None:
            with contextlib.suppress(Exception):
                await self._engine.dispose()
        if self._postgres_database is not None:
            with contextlib.suppress(Exception):
                await _drop_postgres_database(self._postgres_database)
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Proc:
        proc = Proc(name, argv, env=env or os.environ, logfile=self.workdir / f"{name}.log")
        self.processes.append(proc)
        return proc

    async def _start_redis(self) -> None:
        port = free_port()
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        proc = self._spawn(
            "redis",
            [
                REDIS_SERVER,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
        )
        self._redis_process = proc
        client = Redis.from_url(self.redis_url)

        async def pong() -> bool:
            return bool(await client.ping())

        try:
            await _until(pong, proc, what="redis-server")
        finally:
            await client.aclose()

    async def _start_fake(self) -> None:
        port = free_port()
        self.fake_url = f"http://127.0.0.1:{port}"
        config: dict[str, Any] = {
            "latency_seconds": self.fake_latency,
            "request_log_size": self.fake_request_log,
        }
        if self.fake_rate_limit is not None:
            config["rate_limit"] = self.fake_rate_limit.model_dump(mode="json")
        proc = self._spawn(
            "fake-qualtrics",
            [
                PYTHON,
                "-m",
                "service.testing.fake_qualtrics",
                "--port",
                str(port),
                "--config",
                json.dumps(config),
            ],
        )
        self._fake_process = proc
        self._fake = httpx.AsyncClient(base_url=self.fake_url, timeout=30)
        fake = self._fake

        async def healthy() -> bool:
            return (await fake.get("/_fake/health")).status_code == 200

        await _until(healthy, proc, what="the fake Qualtrics")

    async def _create_database(self) -> None:
        if self.database == "sqlite":
            self.database_url = f"sqlite+aiosqlite:///{self.workdir / 'connector.db'}"
            return
        name = f"bench_{os.getpid()}_{secrets.token_hex(4)}"
        await _on_postgres_server(f'CREATE DATABASE "{name}"')
        self._postgres_database = name
        base = POSTGRES_SERVER_URL.replace("postgresql://", "postgresql+asyncpg://", 1)
        self.database_url = base.rsplit("/", 1)[0] + f"/{name}"

    def _environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("CONNECTOR_")}
        env.update(
            {
                "CONNECTOR_DATABASE_URL": self.database_url,
                "CONNECTOR_REDIS_URL": self.redis_url,
                "CONNECTOR_QUALTRICS_BASE_URL": self.fake_url + "/{subdomain}",
                "CONNECTOR_SECRET_KEYS": self._secret_keys,
                "CONNECTOR_JWT_SECRET": secrets.token_urlsafe(48),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def _migrate(self) -> None:
        done = subprocess.run(  # noqa: S603 (our own command)
            [PYTHON, "-m", "service", "migrate"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"service migrate failed:\n{done.stdout}\n{done.stderr}")

    # -- the fake ---------------------------------------------------------------------------

    @property
    def fake(self) -> httpx.AsyncClient:
        """An httpx client on the fake's control surface (`/_fake/...`)."""
        if self._fake is None:
            raise RuntimeError("the stack is not running")
        return self._fake

    @property
    def fake_process(self) -> Proc:
        if self._fake_process is None:
            raise RuntimeError("the stack is not running")
        return self._fake_process

    @property
    def redis_process(self) -> Proc:
        if self._redis_process is None:
            raise RuntimeError("the stack is not running")
        return self._redis_process

    async def configure_fake(self, **changes: Any) -> dict[str, Any]:
        """PATCH /_fake/config (e.g. `latency_seconds=0.1`, `rate_limit=None`)."""
        answer = await self.fake.patch("/_fake/config", json=changes)
        answer.raise_for_status()
        config: dict[str, Any] = answer.json()
        return config

    async def register_account(self, brand_id: str, *, subdomain: str = SUBDOMAIN) -> FakeAccount:
        account = FakeAccount(
            client_id=f"bench-{secrets.token_hex(6)}",
            client_secret=secrets.token_urlsafe(24),
            subdomain=subdomain,
            brand_id=brand_id,
        )
        answer = await self.fake.post(
            "/_fake/accounts",
            json={
                "client_id": account.client_id,
                "client_secret": account.client_secret,
                "datacenter": subdomain,
                "brand_id": brand_id,
            },
        )
        answer.raise_for_status()
        return account

    async def fake_access_token(self, account: FakeAccount) -> str:
        """A bearer token for `account`, straight from the fake's token endpoint."""
        answer = await self.fake.post(
            f"/{account.subdomain}/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(account.client_id, account.client_secret),
        )
        answer.raise_for_status()
        token: str = answer.json()["access_token"]
        return token

    async def fake_responses(self, survey_id: str) -> dict[str, int]:
        """Responses the fake stored for the survey, per Idempotency-Key."""
        answer = await self.fake.get(f"/_fake/surveys/{survey_id}/responses")
        answer.raise_for_status()
        counts: dict[str, int] = {}
        for response in answer.json():
            key = str(response["idempotencyKey"])
            counts[key] = counts.get(key, 0) + 1
        return counts

    async def clear_fake_responses(self, survey_id: str) -> int:
        """Make the fake forget the survey's stored responses (between benchmark rounds, so its
        memory and garbage collection do not grow from round to round); how many there were."""
        answer = await self.fake.delete(f"/_fake/surveys/{survey_id}/responses")
        answer.raise_for_status()
        deleted: int = answer.json()["deleted"]
        return deleted

    async def fake_requests(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The fake's request log (oldest first): `timestamp` (when the request arrived, Unix
        seconds to the microsecond), `at` (the same, whole seconds, ISO 8601), `method`, `path`
        (without the subdomain), `datacenter`, `status` (None: the connection was dropped),
        `fault`. Only API requests are logged, token requests included."""
        answer = await self.fake.get(
            "/_fake/requests", params={"limit": limit or self.fake_request_log}
        )
        answer.raise_for_status()
        requests: list[dict[str, Any]] = answer.json()
        return requests

    async def fake_stats(self) -> dict[str, Any]:
        """`{"total", "by_status", "rate_limited"}` of every API request the fake answered."""
        answer = await self.fake.get("/_fake/stats")
        answer.raise_for_status()
        stats: dict[str, Any] = answer.json()
        return stats

    # -- the service's processes ------------------------------------------------------------

    def environment(self, **overrides: object) -> dict[str, str]:
        """`stack.env` with overrides: `worker_max_jobs=20` sets `CONNECTOR_WORKER_MAX_JOBS`;
        names already spelled `CONNECTOR_...` (or any other upper-case name) are used as is."""
        env = dict(self.env)
        for name, value in overrides.items():
            key = name if name.isupper() else f"CONNECTOR_{name.upper()}"
            env[key] = str(value)
        return env

    async def start_api(self, **env_overrides: object) -> Proc:
        """`python -m service api` on a free port (one uvicorn worker), once `/readyz` is 200."""
        port = free_port()
        proc = self._spawn(
            f"api-{port}",
            [PYTHON, "-m", "service", "api", "--host", "127.0.0.1", "--port", str(port)],
            self.environment(**env_overrides),
        )
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=5) as probe:

            async def ready() -> bool:
                return (await probe.get("/readyz")).status_code == 200

            await _until(ready, proc, what="the api")
        self.api_url, self.api_process = url, proc
        return proc

    def stop_api(self, timeout: float = 20.0) -> None:
        if self.api_process is not None:
            self.api_process.stop(timeout=timeout)
            self.api_process = None

    async def start_workers(self, n: int = 1, **env_overrides: object) -> list[Proc]:
        """`n` processes of `python -m service worker`, returned once each logged "worker ready"."""
        env = self.environment(**env_overrides)
        started = [
            self._spawn(
                f"worker-{len(self.workers) + index}", [PYTHON, "-m", "service", "worker"], env
            )
            for index in range(n)
        ]
        self.workers.extend(started)
        for proc in started:

            async def ready(proc: Proc = proc) -> bool:
                return "worker ready" in proc.log()

            await _until(ready, proc, what=proc.name)
        return started

    def stop_workers(self, timeout: float = 60.0) -> None:
        """SIGTERM to every running worker (they finish their jobs in flight), then wait."""
        for proc in self.workers:
            proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
            proc.stop(signal.SIGKILL, timeout=5)
        self.workers = []

    # -- the database -----------------------------------------------------------------------

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        """Sessions on the stack's database, in this process."""
        if self._sessionmaker is None:
            raise RuntimeError("the stack is not running")
        return self._sessionmaker

    async def delivery_counts(self, organization_id: uuid.UUID | None = None) -> dict[str, int]:
        """Deliveries per status (`pending`, `delivered`, ...), optionally of one organization."""
        query = select(Delivery.status, func.count()).group_by(Delivery.status)
        if organization_id is not None:
            query = query.where(Delivery.organization_id == organization_id)
        async with self.sessionmaker() as session:
            rows = (await session.execute(query)).all()
        return {DeliveryStatus(status).value: int(count) for status, count in rows}

    async def delivered_times(self, ids: Sequence[uuid.UUID] | None = None) -> list[datetime]:
        """`delivered_at` of the delivered deliveries (of `ids`, if given), in order."""
        query = select(Delivery.delivered_at).where(Delivery.delivered_at.is_not(None))
        if ids is not None:
            query = query.where(Delivery.id.in_(ids))
        async with self.sessionmaker() as session:
            times = (await session.scalars(query.order_by(Delivery.delivered_at))).all()
        return [moment for moment in times if moment is not None]

    async def wait_delivered(
        self, count: int, *, within: float, organization_id: uuid.UUID | None = None
    ) -> float:
        """Seconds until at least `count` deliveries are `delivered` (RuntimeError after
        `within` seconds, with the counts and the workers' log tails)."""
        started = time.monotonic()
        counts: dict[str, int] = {}
        while time.monotonic() - started < within:
            counts = await self.delivery_counts(organization_id)
            if counts.get("delivered", 0) >= count:
                return time.monotonic() - started
            await asyncio.sleep(0.1)
        tails = "\n".join(f"--- {proc.name}\n{proc.log()[-2000:]}" for proc in self.workers)
        raise RuntimeError(f"{counts} after {within} s; wanted {count} delivered\n{tails}")

    async def plan_deliveries(
        self, setup: Setup, interactions: int, *, batch: int = 1000
    ) -> list[uuid.UUID]:
        """Store `interactions` generated interactions and their deliveries (pending and due
        now, one per integration whose trigger matches) straight into the database, the way
        intake's planner does, without the api. Not enqueued: see `enqueue`."""
        ids: list[uuid.UUID] = []
        factory = WebhookFactory(setup.webhook_secret)
        for start in range(0, interactions, batch):
            async with self.sessionmaker.begin() as session:
                integrations = await candidates(session, setup.organization_id)
                stored: list[Interaction] = []
                planned: list[Delivery] = []
                for _ in range(min(batch, interactions - start)):
                    payload = InteractionPayload.model_validate(factory.interaction())
                    interaction = Interaction(
                        id=uuid.uuid4(),
                        organization_id=setup.organization_id,
                        external_id=payload.id,
                        payload=payload.model_dump(mode="json"),
                        event_timestamp=utc_now(),
                        started_at=payload.started_at,
                    )
                    stored.append(interaction)
                    planned.extend(plan(interaction, payload, integrations))
                session.add_all(stored)
                await session.flush()  # the interactions first: deliveries refer to them
                session.add_all(planned)
                ids.extend(delivery.id for delivery in planned)
        return ids

    async def quiesce_database(self) -> None:
        """After a bulk load, before a measurement: `VACUUM (ANALYZE)` and a `CHECKPOINT` on
        PostgreSQL (fresh planner statistics; no autovacuum or checkpoint catching up during
        the measured window), `ANALYZE` on SQLite."""
        if self.database == "sqlite":
            async with self.sessionmaker() as session:
                await session.execute(text("ANALYZE"))
            return
        async with self._require_engine().connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("VACUUM (ANALYZE)"))
            await autocommit.execute(text("CHECKPOINT"))

    def _require_engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("the stack is not running")
        return self._engine

    async def enqueue(self, ids: Sequence[uuid.UUID], *, chunk: int = 2000) -> int:
        """Enqueue deliveries as the api does after its commit (arq jobs, `last_enqueued_at`
        stamped); the number the queue accepted."""
        dispatcher = ArqDispatcher.from_url(self.redis_url, self.sessionmaker)
        accepted = 0
        try:
            for start in range(0, len(ids), chunk):
                accepted += await dispatcher.submit(ids[start : start + chunk])
        finally:
            await dispatcher.aclose()
        return accepted

    # -- setting up an organization ---------------------------------------------------------

    async def setup(
        self,
        integrations: int = 3,
        triggers_per_integration: int = 5,
        fields: int = 20,
        match: Match = "last",
        *,
        brands: int | None = None,
    ) -> Setup:
        """An organization, its admin, the catalogue and `integrations` enabled integrations,
        set up over the public API (the api is started if it is not running).

        Each integration has its own account at the fake (brand `bench-brand-{i % brands}`;
        `brands=None`: one brand per integration), `triggers_per_integration` varied triggers
        of which exactly one matches every interaction `WebhookFactory` makes (placed by
        `match`; "none": none does), and the first `fields` fields of `FIELD_CANDIDATES`.
        The fake answers without latency or rate limit while this runs.
        """
        if not 1 <= fields <= len(FIELD_CANDIDATES):
            raise ValueError(f"fields must be from 1 to {len(FIELD_CANDIDATES)}")
        if triggers_per_integration < 1:
            raise ValueError("every integration needs at least one trigger")
        if self.api_process is None or not self.api_process.alive:
            await self.start_api()
        password = secrets.token_urlsafe(18)
        box = SecretBox([self._secret_keys])
        async with self.sessionmaker.begin() as session:
            created = await organization_service.create(
                session, box, name=f"Bench {secrets.token_hex(3)}", qualtrics_enabled=True
            )
            email = f"admin-{secrets.token_hex(4)}@bench.example"
            await organization_service.create_user(
                session,
                organization_id=created.organization.id,
                email=email,
                password=password,
                role=Role.ADMIN,
            )
        await self.configure_fake(latency_seconds=0.0, rate_limit=None)
        try:
            async with httpx.AsyncClient(base_url=self.api_url, timeout=60) as api:
                token = await _call(
                    api, "POST", "/v1/auth/token", data={"username": email, "password": password}
                )
                api.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
                await _call(api, "PUT", "/v1/catalog", json=CATALOG)
                selection = tuple(FIELD_CANDIDATES[:fields])
                made = [
                    await self._integration(
                        api,
                        number,
                        brand=f"bench-brand-{number % (brands or integrations)}",
                        triggers=triggers_per_integration,
                        selection=selection,
                        match=match,
                    )
                    for number in range(integrations)
                ]
                headers = {"Authorization": api.headers["Authorization"]}
        finally:
            rate_limit = self.fake_rate_limit
            await self.configure_fake(
                latency_seconds=self.fake_latency,
                rate_limit=None if rate_limit is None else rate_limit.model_dump(mode="json"),
            )
        return Setup(
            organization_id=created.organization.id,
            webhook_secret=created.webhook_secret,
            admin_headers=headers,
            integrations=tuple(made),
            fields=selection,
        )

    async def _integration(
        self,
        api: httpx.AsyncClient,
        number: int,
        *,
        brand: str,
        triggers: int,
        selection: Sequence[dict[str, str]],
        match: Match,
    ) -> IntegrationSetup:
        account = await self.register_account(brand)
        created = await _call(api, "POST", "/v1/integrations", json={"name": f"Bench {number}"})
        integration_id = uuid.UUID(created.json()["id"])
        base = f"/v1/integrations/{integration_id}"
        connection = {
            "client_id": account.client_id,
            "client_secret": account.client_secret,
            "subdomain": account.subdomain,
        }
        await _call(api, "PUT", f"{base}/qualtrics-connection", json=connection)
        project = await _call(api, "POST", f"{base}/project", json={"name": f"Bench {number}"})
        await _call(api, "PUT", f"{base}/data-fields", json={"fields": list(selection)})
        planned = trigger_bodies(triggers, match, offset=number)
        for body, _ in planned:
            await _call(api, "POST", f"{base}/triggers", json=body)
        await _call(api, "POST", f"{base}/enable")
        matching = next((body["name"] for body, matches in planned if matches), None)
        return IntegrationSetup(
            id=integration_id,
            survey_id=str(project.json()["survey_id"]),
            account=account,
            matching_trigger=str(matching) if matching is not None else None,
        )


async def _call(api: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    answer = await api.request(method, url, **kwargs)
    if answer.status_code >= 400:
        raise RuntimeError(f"{method} {url} answered {answer.status_code}: {answer.text[:2000]}")
    return answer


async def _on_postgres_server(statement: str) -> None:
    """One statement outside a transaction (CREATE/DROP DATABASE) on the server's own database."""
    url = POSTGRES_SERVER_URL.replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def _drop_postgres_database(name: str) -> None:
    await _on_postgres_server(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- what the organization is set up with ---------------------------------------------------

CATALOG: dict[str, Any] = {
    "categories": [
        {"name": name}
        for name in (
            "Frustration",
            "Repeat contact",
            "Transfer",
            "Hold time",
            "Cancellation",
            "Thanks",
            "Praise",
            "Escalation",
        )
    ],
    "category_groups": [
        {"name": "Effort", "members": ["Frustration", "Repeat contact", "Transfer", "Hold time"]},
        {"name": "Sentiment", "members": ["Thanks", "Praise"]},
        {"name": "Churn risk", "members": ["Cancellation", "Escalation"]},
    ],
    "scores": [
        {
            "name": "TEI",
            "min": 0,
            "max": 10,
            "ranges": [
                {"label": "Low", "min": 0, "max": 3.3},
                {"label": "Average", "min": 3.3, "max": 6.6},
                {"label": "High", "min": 6.6, "max": 10},
            ],
        },
        {
            "name": "AIS",
            "min": 0,
            "max": 10,
            "ranges": [
                {"label": "Weak", "min": 0, "max": 5},
                {"label": "Strong", "min": 5, "max": 10},
            ],
        },
        {"name": "CSAT", "min": 1, "max": 5, "ranges": []},
    ],
    "custom_metadata_fields": [{"name": "region"}, {"name": "product"}, {"name": "tier"}],
    "call_group_types": [{"name": "Team"}, {"name": "Site"}],
}


def _field(source: str, key: str, placement: str, fmt: str) -> dict[str, str]:
    return {"source": source, "key": key, "placement": placement, "format": fmt}


_E, _Q = "embedded_data", "question"
# A realistic mix first (questions and embedded data, every source), then more of the same.
FIELD_CANDIDATES: tuple[dict[str, str], ...] = (
    _field("interaction_detail", "interaction_id", _E, "text"),
    _field("interaction_detail", "link", _E, "text"),
    _field("interaction_detail", "date", _E, "text"),
    _field("interaction_detail", "agent", _Q, "text"),
    _field("score", "TEI", _Q, "value"),
    _field("score", "TEI", _E, "range"),
    _field("category", "Frustration", _Q, "boolean"),
    _field("category_group", "Effort", _Q, "group"),
    _field("category_group", "Effort", _E, "multi_value_text_set"),
    _field("category", "Transfer", _E, "numeric"),
    _field("score", "AIS", _Q, "range"),
    _field("custom_metadata", "region", _E, "text"),
    _field("call_group_type", "Team", _E, "text"),
    _field("customer_detail", "customer_id", _E, "text"),
    _field("interaction_detail", "duration", _E, "text"),
    _field("interaction_detail", "direction", _E, "text"),
    _field("interaction_detail", "channel", _E, "text"),
    _field("category", "Repeat contact", _E, "boolean"),
    _field("category_group", "Sentiment", _E, "numeric"),
    _field("interaction_detail", "country", _E, "text"),
    _field("interaction_detail", "language", _E, "text"),
    _field("interaction_detail", "time", _E, "text"),
    _field("interaction_detail", "talk_time", _E, "text"),
    _field("interaction_detail", "agent_id", _E, "text"),
    _field("interaction_detail", "number_dialed", _E, "text"),
    _field("interaction_detail", "started_at", _E, "text"),
    _field("interaction_detail", "ended_at", _E, "text"),
    _field("interaction_detail", "call_groups", _E, "text"),
    _field("customer_detail", "name", _E, "text"),
    _field("customer_detail", "phone", _E, "text"),
    _field("customer_detail", "email", _E, "text"),
    _field("custom_metadata", "product", _E, "text"),
    _field("custom_metadata", "tier", _E, "text"),
    _field("call_group_type", "Site", _E, "text"),
    _field("category", "Hold time", _Q, "boolean"),
    _field("category", "Escalation", _E, "numeric"),
    _field("category_group", "Churn risk", _Q, "group"),
    _field("score", "CSAT", _E, "range"),
    _field("interaction_detail", "date", _Q, "text"),
    _field("customer_detail", "name", _Q, "text"),
)

# Triggers a generated interaction (a call, inbound, GBR, English, Frustration and Transfer,
# TEI 4.6, 390 s, region EMEA, team Billing) does not match: each fails on one criterion.
_NON_MATCHING: tuple[tuple[str, dict[str, Any]], ...] = (
    ("Chats only", {"channels": ["chat"]}),
    ("Cancellations", {"categories": {"any": ["Cancellation", "Escalation"]}}),
    ("Delighted customers", {"scores": {"TEI": {"min": 8}}, "channels": ["call"]}),
    ("North America", {"countries": ["USA", "CAN"], "directions": ["inbound"]}),
    ("Long calls", {"duration_seconds": {"min": 3600}}),
    ("APAC premium", {"metadata": {"region": ["APAC"], "tier": ["gold"]}}),
    ("Outbound sales", {"directions": ["outbound"], "teams": ["Sales"]}),
    ("Positive sentiment", {"category_groups": {"all": ["Sentiment"]}}),
    ("German and French", {"languages": ["deu", "fra"]}),
    ("Clean transfers", {"categories": {"any": ["Frustration"], "none": ["Transfer"]}}),
    ("Retention team", {"teams": ["Retention"], "talk_time_seconds": {"min": 60}}),
)
_MATCHING: dict[str, Any] = {
    "channels": ["call"],
    "categories": {"any": ["Frustration", "Repeat contact"]},
    "scores": {"TEI": {"max": 6.6}},
    "metadata": {"region": ["EMEA", "AMER"]},
}


def trigger_bodies(
    count: int, match: Match, *, offset: int = 0
) -> list[tuple[dict[str, Any], bool]]:
    """`count` bodies for `POST .../triggers` in position order, each with whether it matches
    every generated interaction (exactly one does, placed by `match`; none for "none")."""
    bodies: list[tuple[dict[str, Any], bool]] = []
    for index in range(count):
        name, criteria = _NON_MATCHING[(offset + index) % len(_NON_MATCHING)]
        bodies.append(({"name": f"{name} #{index + 1}", "criteria": criteria}, False))
    if match != "none":
        where = count - 1 if match == "last" else 0
        bodies[where] = ({"name": f"Frustrated callers #{where + 1}", "criteria": _MATCHING}, True)
    return bodies


# -- signed webhooks --------------------------------------------------------------------------


_INTERACTION: dict[str, Any] = {
    "id": "",
    "channel": "call",
    "direction": "inbound",
    "started_at": "2026-11-26T09:15:00+01:00",
    "ended_at": "2026-11-26T09:21:30+01:00",
    "duration_seconds": 390,
    "talk_time_seconds": 342,
    "language": "eng",
    "country": "GBR",
    "number_dialed": "+441234567890",
    "agent": {"id": "agent-7", "name": "Sam Agent", "email": "sam@example.com"},
    "customer": {
        "id": "cust-42",
        "name": "Alex Customer",
        "phone": "+447700900123",
        "email": "alex@example.com",
    },
    "call_groups": [
        {"id": "t1", "name": "Billing", "type": "Team"},
        {"id": "s3", "name": "Leeds", "type": "Site"},
    ],
    "categories": [
        {"name": "Frustration", "groups": ["Effort"], "occurrences": 2},
        {"name": "Transfer", "groups": ["Effort"], "occurrences": 1},
    ],
    "scores": [
        {"name": "TEI", "value": 4.6},
        {"name": "AIS", "value": 7.2},
        {"name": "CSAT", "value": 3},
    ],
    "metadata": {"region": "EMEA", "product": "Broadband", "tier": "silver"},
    "url": "",
}
_ID, _TIMESTAMP = "@@interaction-id@@", "@@timestamp@@"


class WebhookFactory:
    """Signed `interaction.completed` events of about `size` bytes, made fast.

    The body is rendered once as a template (the interaction padded with transcript-like
    metadata up to `size`); each event fills in a fresh interaction id and timestamp and is
    signed with HMAC-SHA256 (Standard Webhooks v1), a few microseconds per event.
    """

    def __init__(self, webhook_secret: str, *, size: int = 2048) -> None:
        self._key = base64.b64decode(webhook_secret.removeprefix("whsec_"))
        self.size = size
        self._template = self._render(size)

    @staticmethod
    def _event(padding: str) -> dict[str, Any]:
        data = json.loads(json.dumps(_INTERACTION))
        data["id"] = _ID
        data["url"] = f"https://app.creovai.com/interactions/{_ID}"
        if padding:
            data["metadata"]["transcript_summary"] = padding
        return {"type": "interaction.completed", "timestamp": _TIMESTAMP, "data": data}

    def _render(self, size: int) -> str:
        sample = self._fill(json.dumps(self._event(""), separators=(",", ":")), "x" * 32, now())
        missing = size - len(sample.encode()) - len(',"transcript_summary":""')
        padding = _padding(max(0, missing))
        return json.dumps(self._event(padding), separators=(",", ":"))

    @staticmethod
    def _fill(template: str, interaction_id: str, timestamp: datetime) -> str:
        return template.replace(_ID, interaction_id).replace(_TIMESTAMP, timestamp.isoformat())

    def interaction(self, interaction_id: str | None = None) -> dict[str, Any]:
        """The `data` of an event: an interaction every matching trigger selects."""
        event: dict[str, Any] = json.loads(
            self._fill(self._template, interaction_id or _new_interaction_id(), now())
        )
        data: dict[str, Any] = event["data"]
        return data

    def make(
        self, *, interaction_id: str | None = None, webhook_id: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """Headers and body of one signed event with unique ids and a fresh timestamp."""
        moment = now()
        body = self._fill(self._template, interaction_id or _new_interaction_id(), moment)
        message_id = webhook_id or f"msg_{uuid.uuid4().hex}"
        stamp = str(int(moment.timestamp()))
        signed = f"{message_id}.{stamp}.{body}".encode()
        digest = hmac.new(self._key, signed, hashlib.sha256).digest()
        headers = {
            "webhook-id": message_id,
            "webhook-timestamp": stamp,
            "webhook-signature": "v1," + base64.b64encode(digest).decode(),
            "content-type": "application/json",
        }
        return headers, body.encode()

    def many(self, count: int) -> Iterator[tuple[dict[str, str], bytes]]:
        """`count` events, each made when it is taken (so timestamps stay fresh)."""
        for _ in range(count):
            yield self.make()


_factories: dict[tuple[str, int], WebhookFactory] = {}


def signed_webhook(
    setup: Setup,
    *,
    size: int = 2048,
    interaction_id: str | None = None,
    webhook_id: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """One signed `interaction.completed` event for `setup`'s organization (headers, body),
    of about `size` bytes; post it to `webhook_path(setup)`."""
    key = (setup.webhook_secret, size)
    factory = _factories.get(key)
    if factory is None:
        factory = _factories[key] = WebhookFactory(setup.webhook_secret, size=size)
    return factory.make(interaction_id=interaction_id, webhook_id=webhook_id)


def webhook_path(setup: Setup) -> str:
    return f"/v1/webhooks/{setup.organization_id}/interactions"


def now() -> datetime:
    return datetime.now(UTC)


def _new_interaction_id() -> str:
    return f"call-{uuid.uuid4().hex}"


_WORDS = (
    "customer called about a billing question and the agent explained the charges on the "
    "last invoice then offered to set up a payment plan which the customer accepted "
)


def _padding(length: int) -> str:
    return (_WORDS * (length // len(_WORDS) + 1))[:length]
