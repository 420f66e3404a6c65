"""(c) PostgreSQL unavailable at intake: the webhook answers 503 quickly, never a 2xx.

An API instance (in process) reaches PostgreSQL through a TCP proxy this test controls, so the
database can go away under a running API: a closed port (connections refused and reset), and a
network partition (the port answers, nothing comes back). The worker reaches PostgreSQL
directly: only intake loses its database.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.main import create_app
from service.models import DeliveryStatus, Interaction
from tests.conftest import free_port
from tests.faults.conftest import Scenario, ScenarioFactory
from tests.worker.conftest import Workers

# The engine connects with a 5 s timeout (service/db.py); the answer must come well before a
# sender's own timeout.
INTAKE_DEADLINE = 7.0


class TcpProxy:
    """127.0.0.1:<port> → PostgreSQL, with switches for the ways a database goes away."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.port = free_port()
        self._upstream = (upstream_host, upstream_port)
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._forwarding = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def refuse(self) -> None:
        """The database is gone: the port is closed and every connection is reset."""
        await self._stop_listening()
        self._drop_connections()

    async def partition(self) -> None:
        """A partition: the port still accepts, but no byte goes either way any more, on new
        connections and on the pooled ones (no reset: they just go silent)."""
        self._forwarding = False
        self._flowing.clear()
        if self._server is None:
            await self.start()

    async def heal(self) -> None:
        self._drop_connections()  # what went silent stays broken; new connections work
        self._forwarding = True
        self._flowing.set()
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        await self._stop_listening()
        self._drop_connections()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _drop_connections(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if not self._forwarding:
            return  # accepted, and never answered
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        for source, target in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, target))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            while data := await source.read(65536):
                await self._flowing.wait()
                target.write(data)
                await target.drain()
        target.transport.abort()


@pytest.fixture
async def proxy(settings: Settings) -> AsyncIterator[TcpProxy]:
    url = make_url(settings.database_url)
    tcp = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await tcp.start()
    yield tcp
    await tcp.close()


@pytest.fixture
async def intake(settings: Settings, proxy: TcpProxy) -> AsyncIterator[httpx.AsyncClient]:
    """A second API instance whose CONNECTOR_DATABASE_URL points at the proxy."""
    via_proxy = make_url(settings.database_url).set(host="127.0.0.1", port=proxy.port)
    proxied: FastAPI = create_app(
        settings.model_copy(
            update={"database_url": via_proxy.render_as_string(hide_password=False)}
        )
    )
    async with (
        proxied.router.lifespan_context(proxied),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=proxied), base_url="http://intake"
        ) as client,
    ):
        yield client


async def refused_quickly(
    run: Scenario, intake: httpx.AsyncClient, count: int
) -> tuple[list[str], float]:
    """`count` concurrent webhooks, each answered 503 (problem details, Retry-After) within the
    deadline; their interaction ids and the slowest answer's seconds."""
    try:
        async with asyncio.timeout(INTAKE_DEADLINE + 3):
            sent = await run.send(count, client=intake, concurrency=count)
    except TimeoutError:
        pytest.fail(f"intake hung: no answer within {INTAKE_DEADLINE + 3} s")
    for _, answer, took in sent:
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["status"] == 503
        assert "Retry-After" in answer.headers
        assert took < INTAKE_DEADLINE, f"503 took {took:.2f} s"
    return [external_id for external_id, _, _ in sent], max(took for _, _, took in sent)


async def stored(
    sessionmaker: async_sessionmaker[AsyncSession], external_ids: list[str]
) -> list[str]:
    async with sessionmaker() as session:
        found = await session.scalars(
            select(Interaction.external_id).where(Interaction.external_id.in_(external_ids))
        )
        return list(found.all())


async def test_database_down_at_intake_answers_503_quickly_and_never_2xx(
    scenario: ScenarioFactory,
    workers: Workers,
    intake: httpx.AsyncClient,
    proxy: TcpProxy,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    run = await scenario("postgres_down_at_intake")
    workers.start()
    assert [a.status_code for _, a, _ in await run.send(10, client=intake)] == [202] * 10

    await proxy.refuse()
    refused, slowest_refused = await refused_quickly(run, intake, 5)

    await proxy.heal()
    assert [a.status_code for _, a, _ in await run.send(5, client=intake)] == [202] * 5
    # The pool now holds live connections; the partition silences them and new ones alike.
    # Twelve at once: more than the pool holds, so some wait on a ping, some on a connect.
    await proxy.partition()
    silent, slowest_partitioned = await refused_quickly(run, intake, 12)

    await proxy.heal()
    assert [a.status_code for _, a, _ in await run.send(5, client=intake)] == [202] * 5
    assert await stored(sessionmaker, refused + silent) == []  # a 503 stored nothing

    await run.finish(
        {DeliveryStatus.DELIVERED: 20},
        within=20,
        answered_503=len(refused) + len(silent),
        slowest_503_refused=round(slowest_refused, 2),
        slowest_503_partition=round(slowest_partitioned, 2),
    )
