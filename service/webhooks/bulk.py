"""The three multi-row INSERTs of an intake batch, each one statement and one round trip.

On PostgreSQL each batch is sent as columns (arrays) and unpacked by `unnest`: one small
prepared statement whatever the batch size, with asyncpg encoding the arrays in C. That costs
a fraction of what SQLAlchemy spends per row and per bound value on a multi-row VALUES list,
which at intake rates was the largest part of the api's CPU (bench/intake.py). Elsewhere
(SQLite) the rows go through SQLAlchemy Core's executemany ("insertmanyvalues").

Both paths insert exactly the columns and values of the ORM models (tests/webhooks run on both
databases), with ON CONFLICT DO NOTHING where a row may already exist, and return what was
actually inserted.
"""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Insert, Table, insert, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import Delivery, Interaction, WebhookReceipt

RECEIPTS: Table = WebhookReceipt.__table__  # type: ignore[assignment]
INTERACTIONS: Table = Interaction.__table__  # type: ignore[assignment]
DELIVERIES: Table = Delivery.__table__  # type: ignore[assignment]

ReceiptKey = tuple[uuid.UUID, str]

_PG_RECEIPTS = text(
    """
    INSERT INTO webhook_receipts (organization_id, webhook_id, event_type, received_at)
    SELECT * FROM unnest(:organization_id ::uuid[], :webhook_id ::text[],
                         :event_type ::text[], :received_at ::timestamptz[])
    ON CONFLICT DO NOTHING
    RETURNING organization_id, webhook_id
    """
)
_PG_INTERACTIONS = text(
    """
    INSERT INTO interactions (id, organization_id, external_id, payload, event_timestamp,
                              started_at, revision, created_at, updated_at)
    SELECT id, organization_id, external_id, payload::jsonb, event_timestamp, started_at,
           revision, created_at, created_at
    FROM unnest(:id ::uuid[], :organization_id ::uuid[], :external_id ::text[],
                :payload ::text[], :event_timestamp ::timestamptz[],
                :started_at ::timestamptz[], :revision ::int[], :created_at ::timestamptz[])
         AS rows (id, organization_id, external_id, payload, event_timestamp, started_at,
                  revision, created_at)
    ON CONFLICT DO NOTHING
    RETURNING id
    """
)
_PG_DELIVERIES = text(
    """
    INSERT INTO deliveries (id, organization_id, integration_id, interaction_id, trigger_id,
                            trigger_name, status, attempts, next_attempt_at, last_enqueued_at,
                            interaction_revision, newer_revision_after_delivery,
                            created_at, updated_at)
    SELECT id, organization_id, integration_id, interaction_id, trigger_id, trigger_name,
           status, 0, created_at, last_enqueued_at, interaction_revision, false,
           created_at, created_at
    FROM unnest(:id ::uuid[], :organization_id ::uuid[], :integration_id ::uuid[],
                :interaction_id ::uuid[], :trigger_id ::uuid[], :trigger_name ::text[],
                :status ::text[], :last_enqueued_at ::timestamptz[],
                :interaction_revision ::int[], :created_at ::timestamptz[])
         AS rows (id, organization_id, integration_id, interaction_id, trigger_id,
                  trigger_name, status, last_enqueued_at, interaction_revision, created_at)
    """
)


def _columns(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, list[Any]]:
    return {name: [row[name] for row in rows] for name in names}


def _insert_unless_present(dialect: str, table: Table) -> Insert:
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


async def insert_receipts(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[ReceiptKey]:
    """Rows: organization_id, webhook_id, event_type, received_at. Returns the new keys."""
    if session.get_bind().dialect.name == "postgresql":
        names = ("organization_id", "webhook_id", "event_type", "received_at")
        result = await session.execute(_PG_RECEIPTS, _columns(rows, names))
    else:
        statement = _insert_unless_present("sqlite", RECEIPTS).returning(
            RECEIPTS.c.organization_id, RECEIPTS.c.webhook_id
        )
        result = await session.execute(statement, list(rows))
    return {(row[0], row[1]) for row in result}


async def insert_interactions(
    session: AsyncSession, rows: Sequence[dict[str, Any]]
) -> set[uuid.UUID]:
    """Rows: id, organization_id, external_id, payload (JSONText), event_timestamp,
    started_at, revision, created_at (= updated_at). Returns the ids inserted."""
    if session.get_bind().dialect.name == "postgresql":
        names = (
            "id",
            "organization_id",
            "external_id",
            "payload",
            "event_timestamp",
            "started_at",
            "revision",
            "created_at",
        )
        result = await session.execute(_PG_INTERACTIONS, _columns(rows, names))
    else:
        statement = _insert_unless_present("sqlite", INTERACTIONS).returning(INTERACTIONS.c.id)
        result = await session.execute(
            statement, [{**row, "updated_at": row["created_at"]} for row in rows]
        )
    return {row[0] for row in result}


async def insert_deliveries(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Rows: id, organization_id, integration_id, interaction_id, trigger_id, trigger_name,
    status, last_enqueued_at, interaction_revision, created_at (= updated_at and the first
    next_attempt_at)."""
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        names = (
            "id",
            "organization_id",
            "integration_id",
            "interaction_id",
            "trigger_id",
            "trigger_name",
            "status",
            "last_enqueued_at",
            "interaction_revision",
            "created_at",
        )
        columns = _columns(rows, names)
        columns["status"] = [str(status) for status in columns["status"]]
        await session.execute(_PG_DELIVERIES, columns)
        return
    await session.execute(
        insert(DELIVERIES),
        [
            {**row, "updated_at": row["created_at"], "next_attempt_at": row["created_at"]}
            for row in rows
        ],
    )
