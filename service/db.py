"""Engine and session factories, the request session dependency, and the schema check.

The request session is the one place that commits for the API: services only `flush()`.
It commits when the endpoint function returns and before the response is sent
(`scope="function"`), so a 2xx is never answered for a write that did not commit.
"""

from collections.abc import AsyncIterator
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi import Depends, Request
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from service.kit.json_text import json_serializer

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ALEMBIC_INI = PROJECT_ROOT / "alembic.ini"


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed during a write; FULL makes every acknowledged commit survive
    # power loss (reliability-facts §4.2: concurrent commits share fsyncs anyway).
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_engine(database_url: str, **kwargs: Any) -> AsyncEngine:
    url = make_url(database_url)
    kwargs.setdefault("json_serializer", json_serializer)
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _configure_sqlite)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    # Fail fast when PostgreSQL is down: intake answers 503 in seconds, not after asyncpg's
    # 60 s default, so the sender retries instead of timing out.
    kwargs.setdefault("pool_timeout", 5)
    kwargs.setdefault("connect_args", {"timeout": 5})
    engine = create_async_engine(url, **kwargs)
    # Instead of `pool_pre_ping`, whose ping has no deadline (below).
    event.listen(engine.sync_engine, "checkout", _ping_on_checkout)
    return engine


# How long a pooled PostgreSQL connection may take to answer the check before it is used.
PING_TIMEOUT = 2.0


def _ping_on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """`pool_pre_ping` with a deadline (tests/faults: PostgreSQL partitioned at intake).

    SQLAlchemy's own pre-ping waits for the answer without a timeout, so once the pooled
    connections went silent (a network partition, a frozen server or proxy: no reset, no
    answer) every request that drew one hung until the kernel gave up, many minutes later,
    instead of answering 503. Here a ping that fails (the server restarted) makes the pool
    reconnect, exactly like pre-ping; a ping with no answer in PING_TIMEOUT ends the request
    with `TimeoutError` (an OSError: 503 with Retry-After, nothing stored), and the pool
    discards that connection (closed at once: a polite close would wait 2 s more for it).
    """
    try:
        dbapi_connection.run_async(
            lambda connection: connection.fetchval("SELECT 1", timeout=PING_TIMEOUT)
        )
    except TimeoutError:
        dbapi_connection.driver_connection.terminate()
        raise
    except Exception as exc:
        raise DisconnectionError(f"the pooled connection failed its check: {exc!r}") from exc


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def alembic_config(database_url: str | None = None) -> Config:
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    if database_url is not None:
        config.attributes["database_url"] = database_url
    return config


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def schema_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(_current_revision)


class SchemaOutOfDateError(RuntimeError):
    pass


async def ensure_schema_current(engine: AsyncEngine) -> None:
    """Refuse to serve on a schema other than this code's head (migrations are a release step)."""
    current, head = await schema_revision(engine), head_revision()
    if current != head:
        raise SchemaOutOfDateError(
            f"database schema is at {current or 'no revision'}, this release needs {head}: "
            "run `service migrate` first"
        )
