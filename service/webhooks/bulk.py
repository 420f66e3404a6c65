"""Storing an intake batch: receipts, interactions and deliveries, each kept only if new.

The batch arrives planned as if every webhook in it were new (`BatchRows`); the database
decides which are: a receipt is stored unless its webhook-id is already there, an interaction
only if its webhook's receipt was stored and its id is not already there, a delivery only if
its interaction was stored. What was stored comes back as `Stored`.

On PostgreSQL that is one statement: three INSERTs chained by data-modifying CTEs (and
gated on the planning state being the one the batch was planned with), the rows
sent as columns (arrays) and unpacked by `unnest`, so asyncpg encodes them in C and the
statement stays one small prepared plan whatever the batch size. A single statement commits by
itself (synchronous_commit: durable once it returns), so the batch costs one round trip, not a
BEGIN, three INSERTs and a COMMIT; the foreign keys of deliveries to interactions inserted by
the same statement are checked at its end, when those rows exist. Rows go in the batch's key
order (`ORDER BY ord`), so concurrent batches that share a key (a sender's retry) take
unique-index entries in one order: never a deadlock.

Elsewhere (SQLite) the three INSERTs go through SQLAlchemy Core's executemany
("insertmanyvalues") in the caller's transaction. Both paths insert exactly the columns and
values of the ORM models (tests/webhooks run on both databases).
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Insert, Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from service.kit.pinned import PinnedConnection
from service.models import Delivery, Interaction, WebhookReceipt
from service.webhooks.planning_state import FINGERPRINT_OF

RECEIPTS: Table = WebhookReceipt.__table__  # type: ignore[assignment]
INTERACTIONS: Table = Interaction.__table__  # type: ignore[assignment]
DELIVERIES: Table = Delivery.__table__  # type: ignore[assignment]

ReceiptKey = tuple[uuid.UUID, str]


@dataclass(slots=True)
class BatchRows:
    """The rows of a batch, each list in key order.

    receipts: organization_id, webhook_id, event_type, received_at.
    interactions: id, organization_id, webhook_id (of the webhook carrying it, not a column),
        external_id, payload (JSONText), event_timestamp, started_at, revision, created_at.
    deliveries: id, organization_id, integration_id, interaction_id, trigger_id,
        trigger_name, status, last_enqueued_at, interaction_revision, created_at (which is
        also updated_at and the first next_attempt_at).
    """

    receipts: list[dict[str, Any]] = field(default_factory=list)
    interactions: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    # PostgreSQL: the fingerprint of each organization's planning state the deliveries were
    # planned with (service.webhooks.planning_state); nothing is stored if one changed.
    planned_with: dict[uuid.UUID, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Stored:
    receipts: set[ReceiptKey]
    interactions: set[uuid.UUID]
    # Organizations whose planning state changed since it was read: then nothing was stored.
    stale: set[uuid.UUID] = field(default_factory=set)


# Composed of constants at import (the fingerprint subquery); every value is a parameter.
_PG_STORE = f"""
WITH stale AS (
    SELECT planned.organization_id
    FROM unnest($24::uuid[], $25::text[]) AS planned (organization_id, fingerprint)
    WHERE planned.fingerprint IS DISTINCT FROM
          {FINGERPRINT_OF.format(organization="planned.organization_id")}
), receipts AS (
    INSERT INTO webhook_receipts (organization_id, webhook_id, event_type, received_at)
    SELECT organization_id, webhook_id, event_type, received_at
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[]) WITH ORDINALITY
         AS rows (organization_id, webhook_id, event_type, received_at, ord)
    WHERE NOT EXISTS (SELECT FROM stale)
    ORDER BY ord
    ON CONFLICT DO NOTHING
    RETURNING organization_id, webhook_id
), interactions AS (
    INSERT INTO interactions (id, organization_id, external_id, payload, event_timestamp,
                              started_at, revision, created_at, updated_at)
    SELECT rows.id, rows.organization_id, rows.external_id, rows.payload::jsonb,
           rows.event_timestamp, rows.started_at, rows.revision, rows.created_at,
           rows.created_at
    FROM unnest($5::uuid[], $6::uuid[], $7::text[], $8::text[], $9::text[],
                $10::timestamptz[], $11::timestamptz[], $12::int[], $13::timestamptz[])
         WITH ORDINALITY
         AS rows (id, organization_id, webhook_id, external_id, payload, event_timestamp,
                  started_at, revision, created_at, ord)
    WHERE EXISTS (SELECT FROM receipts
                  WHERE receipts.organization_id = rows.organization_id
                    AND receipts.webhook_id = rows.webhook_id)
    ORDER BY rows.ord
    ON CONFLICT DO NOTHING
    RETURNING id
), deliveries AS (
    INSERT INTO deliveries (id, organization_id, integration_id, interaction_id, trigger_id,
                            trigger_name, status, attempts, next_attempt_at, last_enqueued_at,
                            interaction_revision, newer_revision_after_delivery,
                            created_at, updated_at)
    SELECT rows.id, rows.organization_id, rows.integration_id, rows.interaction_id,
           rows.trigger_id, rows.trigger_name, rows.status, 0, rows.created_at,
           rows.last_enqueued_at, rows.interaction_revision, false, rows.created_at,
           rows.created_at
    FROM unnest($14::uuid[], $15::uuid[], $16::uuid[], $17::uuid[], $18::uuid[], $19::text[],
                $20::text[], $21::timestamptz[], $22::int[], $23::timestamptz[])
         AS rows (id, organization_id, integration_id, interaction_id, trigger_id,
                  trigger_name, status, last_enqueued_at, interaction_revision, created_at)
    WHERE rows.interaction_id IN (SELECT id FROM interactions)
)
SELECT (SELECT array_agg(organization_id) FROM receipts),
       (SELECT array_agg(webhook_id) FROM receipts),
       (SELECT array_agg(id) FROM interactions),
       (SELECT array_agg(organization_id) FROM stale)
"""  # noqa: S608

_RECEIPT_COLUMNS = ("organization_id", "webhook_id", "event_type", "received_at")
_INTERACTION_COLUMNS = (
    "id",
    "organization_id",
    "webhook_id",
    "external_id",
    "payload",
    "event_timestamp",
    "started_at",
    "revision",
    "created_at",
)
_DELIVERY_COLUMNS = (
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


def _columns(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> list[list[Any]]:
    return [[row[name] for row in rows] for name in names]


async def store_postgres(connection: PinnedConnection, rows: BatchRows) -> Stored:
    """The batch as one statement, which commits by itself."""
    deliveries = _columns(rows.deliveries, _DELIVERY_COLUMNS)
    deliveries[6] = [str(status) for status in deliveries[6]]
    [stored] = await connection.fetch_sql(
        _PG_STORE,
        *_columns(rows.receipts, _RECEIPT_COLUMNS),
        *_columns(rows.interactions, _INTERACTION_COLUMNS),
        *deliveries,
        list(rows.planned_with),
        list(rows.planned_with.values()),
    )
    organizations, webhook_ids, interaction_ids, stale = stored
    return Stored(
        set(zip(organizations or (), webhook_ids or (), strict=True)),
        set(interaction_ids or ()),
        set(stale or ()),
    )


def _insert_unless_present(dialect: str, table: Table) -> Insert:
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


async def store_in_session(session: AsyncSession, rows: BatchRows) -> Stored:
    """The batch as three INSERTs in the session's transaction (any dialect; SQLite's path)."""
    dialect = session.get_bind().dialect.name
    result = await session.execute(
        _insert_unless_present(dialect, RECEIPTS).returning(
            RECEIPTS.c.organization_id, RECEIPTS.c.webhook_id
        ),
        rows.receipts,
    )
    receipts: set[ReceiptKey] = {(row[0], row[1]) for row in result}
    interactions = [
        {key: value for key, value in row.items() if key != "webhook_id"}
        | {"updated_at": row["created_at"]}
        for row in rows.interactions
        if (row["organization_id"], row["webhook_id"]) in receipts
    ]
    inserted: set[uuid.UUID] = set()
    if interactions:
        result = await session.execute(
            _insert_unless_present(dialect, INTERACTIONS).returning(INTERACTIONS.c.id),
            interactions,
        )
        inserted = {row[0] for row in result}
    deliveries = [
        row | {"updated_at": row["created_at"], "next_attempt_at": row["created_at"]}
        for row in rows.deliveries
        if row["interaction_id"] in inserted
    ]
    if deliveries:
        await session.execute(insert(DELIVERIES), deliveries)
    return Stored(receipts, inserted)
