"""`PinnedConnection`: one kept PostgreSQL connection, replaced whenever it may be broken.

PostgreSQL only (the class drives asyncpg directly). Each test has its own engine, with the
production options of `service.db.create_engine`, on the migrated test database. The server is
watched and its backends terminated from a separate asyncpg connection, outside that engine's
pool, so the pool's counts are the kept connection's alone.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import pytest
from sqlalchemy import Integer, String, bindparam, cast, literal, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql import ClauseElement

from service.db import create_engine
from service.kit import pinned as pinned_module
from service.kit.pinned import CompiledStatement, PinnedConnection
from tests.conftest import POSTGRES_SERVER_URL


class Server:
    """Watches and ends backends through a connection of its own (outside the engine's pool)."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection  # asyncpg's (untyped)

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls) -> AsyncIterator["Server"]:
        connection = await asyncpg.connect(POSTGRES_SERVER_URL)
        try:
            yield cls(connection)
        finally:
            await connection.close()

    async def state(self, pid: int) -> str | None:
        """The backend's `pg_stat_activity.state` (None: no such backend)."""
        state: str | None = await self._connection.fetchval(
            "SELECT state FROM pg_stat_activity WHERE pid = $1", pid
        )
        return state

    async def listed(self, pid: int) -> bool:
        count: int = await self._connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
        )
        return count > 0

    async def terminate(self, pid: int) -> None:
        """End a backend and wait until the server no longer lists it."""
        terminated: bool = await self._connection.fetchval("SELECT pg_terminate_backend($1)", pid)
        assert terminated
        await self.wait_gone(pid)

    async def wait_gone(self, pid: int, within: float = 5.0) -> None:
        async def gone() -> bool:
            return not await self.listed(pid)

        await wait_for(gone, f"backend {pid} to exit", within)


@pytest.fixture
async def engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    made = create_engine(postgres_url, pool_size=2, max_overflow=0)
    yield made
    await made.dispose()


@pytest.fixture
async def pinned(engine: AsyncEngine) -> AsyncIterator[PinnedConnection]:
    connection = PinnedConnection(engine, timeout=5.0)
    yield connection
    await connection.aclose()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with Server.connect() as connected:
        yield connected


def pool_of(engine: AsyncEngine) -> QueuePool:
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    return pool


async def backend_pid(connection: PinnedConnection) -> int:
    [row] = await connection.fetch_sql("SELECT pg_backend_pid()")
    return int(row[0])


async def wait_for(
    condition: Callable[[], Awaitable[bool]], what: str, within: float = 5.0
) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        await asyncio.sleep(0.02)


async def wait_until_noticed(connection: PinnedConnection) -> None:
    """Until asyncpg has read the server's reset (the one bit of state only the driver knows)."""

    async def noticed() -> bool:
        driver = connection._driver
        return driver is None or bool(driver.is_closed())

    await wait_for(noticed, "asyncpg to notice the closed connection")


def terminate_unnoticed(pid: int, *, then_sleep: float) -> None:
    """End a backend while blocking the caller's event loop, then sleep (still blocking): the
    reset is on the socket, but asyncpg cannot read it before the next statement's first await.
    That is a connection broken in a way asyncpg has not noticed."""

    async def end() -> None:
        async with Server.connect() as server:
            await server.terminate(pid)

    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(asyncio.run, end()).result(timeout=10)
    time.sleep(then_sleep)


# -- statements --------------------------------------------------------------------------------


async def test_fetch_sql_returns_rows_on_one_kept_connection(
    pinned: PinnedConnection, engine: AsyncEngine, server: Server
) -> None:
    rows = await pinned.fetch_sql(
        "SELECT n, $2::text AS label FROM generate_series(1, $1::int) AS n", 3, "x"
    )
    pids = {await backend_pid(pinned) for _ in range(3)}
    [pid] = pids

    assert [(row["n"], row["label"]) for row in rows] == [(1, "x"), (2, "x"), (3, "x")]
    assert pool_of(engine).checkedout() == 1
    # Kept outside any transaction: each statement committed by itself.
    assert await server.state(pid) == "idle"


async def test_fetch_compiles_a_statement_once_and_passes_params(
    pinned: PinnedConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled: list[ClauseElement] = []
    original = CompiledStatement.of

    def counting(
        cls: type[CompiledStatement], statement: ClauseElement, engine: AsyncEngine
    ) -> CompiledStatement:
        compiled.append(statement)
        return original(statement, engine)

    monkeypatch.setattr(CompiledStatement, "of", classmethod(counting))
    total = select(
        (cast(bindparam("a"), Integer) + cast(bindparam("b"), Integer)).label("total"),
        literal("pending", String).label("status"),  # a literal of the statement's own
    )
    other = select(cast(bindparam("a"), Integer).label("alone"))

    answers = [await pinned.fetch(total, {"a": a, "b": 10}) for a in (1, 2, 3)]
    [alone] = await pinned.fetch(other, {"a": 7})

    assert [[(row["total"], row["status"]) for row in rows] for rows in answers] == [
        [(11, "pending")],
        [(12, "pending")],
        [(13, "pending")],
    ]
    assert alone["alone"] == 7
    assert compiled == [total, other]  # each statement compiled once, on first use


async def test_a_parameter_left_out_is_an_error_and_a_literal_null_is_kept(
    pinned: PinnedConnection,
) -> None:
    both = select(
        cast(bindparam("given"), Integer).label("given"),
        cast(literal(None), Integer).label("null"),  # the statement's own NULL
    )

    [row] = await pinned.fetch(both, {"given": 5})
    assert (row["given"], row["null"]) == (5, None)
    with pytest.raises(KeyError, match="given"):
        await pinned.fetch(both, {})


async def test_statements_are_told_apart_even_when_one_reuses_a_collected_ones_id(
    pinned: PinnedConnection,
) -> None:
    """The compiled text is cached by the statement's identity; a statement built later may
    get the id of one that was garbage-collected, and must not get its text."""
    for value in range(50):
        statement = select(literal(value, Integer).label("value"))
        [row] = await pinned.fetch(statement, {})
        assert row["value"] == value
        del statement, row


# -- replacing a broken connection --------------------------------------------------------------


async def test_a_connection_the_server_closed_is_replaced(
    pinned: PinnedConnection, engine: AsyncEngine, server: Server
) -> None:
    before = await backend_pid(pinned)
    await server.terminate(before)
    await wait_until_noticed(pinned)

    after = await backend_pid(pinned)

    assert after != before
    assert await server.state(after) == "idle"
    assert pool_of(engine).checkedout() == 1


async def test_an_idle_connection_is_pinged_before_use(
    pinned: PinnedConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pinned_module, "IDLE_CHECK_AFTER", 0.05)
    pid = await backend_pid(pinned)
    queries: list[str] = []
    original = asyncpg.connection.Connection.fetchval

    async def counting(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        queries.append(query)
        return await original(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.connection.Connection, "fetchval", counting)

    await asyncio.sleep(0.1)
    after_idle = await backend_pid(pinned)
    pinged_after_idle = list(queries)
    busy = await backend_pid(pinned)  # used just now: no ping

    assert pinged_after_idle == ["SELECT 1"]
    assert queries == ["SELECT 1"]
    assert after_idle == busy == pid


async def test_an_idle_connection_broken_unnoticed_is_replaced_before_use(
    pinned: PinnedConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pinned_module, "IDLE_CHECK_AFTER", 0.05)
    before = await backend_pid(pinned)
    terminate_unnoticed(before, then_sleep=0.1)
    assert not pinned._driver.is_closed()  # asyncpg has not seen the reset yet

    after = await backend_pid(pinned)  # the ping fails, a new connection runs the statement

    assert after != before


async def test_a_busy_connection_broken_unnoticed_fails_one_statement(
    pinned: PinnedConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the idle ping (used moments ago), the statement itself meets the broken
    connection: that one fails, and the next runs on a new connection."""
    monkeypatch.setattr(pinned_module, "IDLE_CHECK_AFTER", 60.0)
    before = await backend_pid(pinned)
    terminate_unnoticed(before, then_sleep=0)
    assert not pinned._driver.is_closed()

    with pytest.raises(asyncpg.ConnectionDoesNotExistError):
        await backend_pid(pinned)
    after = await backend_pid(pinned)

    assert after != before


# -- deadlines and errors -----------------------------------------------------------------------


async def test_a_statement_over_the_deadline_fails_in_time_and_is_not_left_running(
    engine: AsyncEngine, server: Server
) -> None:
    connection = PinnedConnection(engine, timeout=0.3)
    try:
        before = await backend_pid(connection)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await connection.fetch_sql("SELECT pg_sleep(5)")
        elapsed = time.monotonic() - started

        after = await backend_pid(connection)
    finally:
        await connection.aclose()

    # The deadline, plus the discarded connection's close (well under SQLAlchemy's 2 s
    # fallback for a close that gets no answer).
    assert 0.29 <= elapsed < 1.0
    assert after != before

    await server.wait_gone(before, within=3.0)  # not left sleeping on


@pytest.mark.parametrize(
    ("sql", "arguments", "error"),
    [
        ("SELECT 1 / 0", (), asyncpg.DivisionByZeroError),  # the server's error
        ("SELECT $1::int", (), asyncpg.InterfaceError),  # asyncpg's own: an argument missing
    ],
    ids=["server-error", "driver-error"],
)
async def test_any_error_discards_the_connection(
    pinned: PinnedConnection,
    engine: AsyncEngine,
    sql: str,
    arguments: tuple[Any, ...],
    error: type[Exception],
) -> None:
    before = await backend_pid(pinned)

    with pytest.raises(error):
        await pinned.fetch_sql(sql, *arguments)
    checked_out_after_error = pool_of(engine).checkedout()
    after = await backend_pid(pinned)

    assert checked_out_after_error == 0
    assert after != before
    assert pool_of(engine).checkedout() == 1


async def test_a_cancelled_statement_discards_the_connection(pinned: PinnedConnection) -> None:
    before = await backend_pid(pinned)
    statement = asyncio.create_task(pinned.fetch_sql("SELECT pg_sleep(5)"))
    await asyncio.sleep(0.1)

    statement.cancel()
    with pytest.raises(asyncio.CancelledError):
        await statement
    after = await backend_pid(pinned)

    assert after != before


# -- closing ------------------------------------------------------------------------------------


async def test_aclose_returns_the_connection_to_the_pool(engine: AsyncEngine) -> None:
    connection = PinnedConnection(engine, timeout=5.0)
    await connection.aclose()  # nothing kept yet: nothing to do
    pid = await backend_pid(connection)
    assert pool_of(engine).checkedout() == 1

    await connection.aclose()
    await connection.aclose()  # twice is harmless
    checked_out, checked_in = pool_of(engine).checkedout(), pool_of(engine).checkedin()
    again = await backend_pid(connection)  # opens another: the same, from the pool
    await connection.aclose()

    assert (checked_out, checked_in) == (0, 1)
    assert again == pid
    assert pool_of(engine).checkedout() == 0
