"""Storing an intake batch: receipts, interactions and deliveries, each kept only if new.

The batch arrives planned as if every webhook in it were new (`BatchRows`); the database
decides which are: a receipt is stored unless its webhook-id is already there, an interaction
only if its webhook's receipt was stored and its id is not already there, a delivery only if
its interaction was stored. What was stored comes back as `Stored`.

On PostgreSQL that is one statement: three INSERTs chained by data-modifying CTEs (and
gated on the planning state being the one the batch was planned with), the rows
sent as columns (arrays) and unpacked by `unnest`, so asyncpg encodes them in C and the
statement stays one small prepared plan whatever the batch size. asyncpg still handles each
array element on its own (about 0.1-0.5 µs each, timestamps the dearest), so the columns
carry only what differs from row to row: shared values are one parameter, a delivery's
organization comes from its interaction, and its integration, trigger and status from a
per-batch table of (integration, trigger) pairs. A single statement commits by
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
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from service.kit.json_text import JSONText
from service.kit.pinned import PinnedConnection
from service.models import Delivery, DeliveryStatus, Interaction, WebhookReceipt
from service.webhooks.planning_state import FINGERPRINT_OF

RECEIPTS: Table = WebhookReceipt.__table__  # type: ignore[assignment]
INTERACTIONS: Table = Interaction.__table__  # type: ignore[assignment]
DELIVERIES: Table = Delivery.__table__  # type: ignore[assignment]

ReceiptKey = tuple[uuid.UUID, str]


@dataclass(slots=True)
class ReceiptColumns:
    organization_id: list[uuid.UUID] = field(default_factory=list)
    webhook_id: list[str] = field(default_factory=list)
    event_type: list[str] = field(default_factory=list)

    def add(self, *, organization_id: uuid.UUID, webhook_id: str, event_type: str) -> None:
        self.organization_id.append(organization_id)
        self.webhook_id.append(webhook_id)
        self.event_type.append(event_type)


@dataclass(slots=True)
class InteractionColumns:
    id: list[uuid.UUID] = field(default_factory=list)
    organization_id: list[uuid.UUID] = field(default_factory=list)
    # Of the webhook carrying it (not a column): stored only if that receipt is.
    webhook_id: list[str] = field(default_factory=list)
    external_id: list[str] = field(default_factory=list)
    payload: list[JSONText] = field(default_factory=list)
    event_timestamp: list[datetime] = field(default_factory=list)
    started_at: list[datetime] = field(default_factory=list)

    def add(
        self,
        *,
        id: uuid.UUID,
        organization_id: uuid.UUID,
        webhook_id: str,
        external_id: str,
        payload: JSONText,
        event_timestamp: datetime,
        started_at: datetime,
    ) -> None:
        self.id.append(id)
        self.organization_id.append(organization_id)
        self.webhook_id.append(webhook_id)
        self.external_id.append(external_id)
        self.payload.append(payload)
        self.event_timestamp.append(event_timestamp)
        self.started_at.append(started_at)


@dataclass(slots=True)
class TargetColumns:
    """Where the batch's deliveries go: each (integration, trigger) pair once, with the name
    the deliveries keep of the trigger and the status they start in (both the same for every
    delivery of a pair within a batch, planned with one state). Deliveries refer to their pair
    by its number (1-based, as SQL's ordinality), so a delivery costs three array elements
    instead of six."""

    integration_id: list[uuid.UUID] = field(default_factory=list)
    trigger_id: list[uuid.UUID] = field(default_factory=list)
    trigger_name: list[str] = field(default_factory=list)
    status: list[DeliveryStatus] = field(default_factory=list)
    numbers: dict[tuple[uuid.UUID, uuid.UUID], int] = field(default_factory=dict)

    def number(
        self,
        *,
        integration_id: uuid.UUID,
        trigger_id: uuid.UUID,
        trigger_name: str,
        status: DeliveryStatus,
    ) -> int:
        key = (integration_id, trigger_id)
        number = self.numbers.get(key)
        if number is None:
            self.integration_id.append(integration_id)
            self.trigger_id.append(trigger_id)
            self.trigger_name.append(trigger_name)
            self.status.append(status)
            number = self.numbers[key] = len(self.integration_id)
        return number


@dataclass(slots=True)
class DeliveryColumns:
    """A delivery's organization is its interaction's, and the rest is its target's."""

    id: list[uuid.UUID] = field(default_factory=list)
    interaction_id: list[uuid.UUID] = field(default_factory=list)
    target: list[int] = field(default_factory=list)  # a number of TargetColumns

    def add(self, *, id: uuid.UUID, interaction_id: uuid.UUID, target: int) -> None:
        self.id.append(id)
        self.interaction_id.append(interaction_id)
        self.target.append(target)


@dataclass(slots=True)
class BatchRows:
    """The rows of a batch as columns, each in key order, all created at `now`.

    What every row of a kind shares is stated once rather than per row: the time (received,
    created, updated, first due), the revision of a new interaction and of its deliveries'
    copy (1), and `enqueued_at`, the stamp of the pending deliveries (None when nothing
    enqueues them). On PostgreSQL each column is one array parameter, and asyncpg encodes
    an array element by element: the fewer elements, the cheaper the batch.
    """

    now: datetime
    enqueued_at: datetime | None
    receipts: ReceiptColumns = field(default_factory=ReceiptColumns)
    interactions: InteractionColumns = field(default_factory=InteractionColumns)
    targets: TargetColumns = field(default_factory=TargetColumns)
    deliveries: DeliveryColumns = field(default_factory=DeliveryColumns)
    # PostgreSQL: the fingerprint of each organization's planning state the deliveries were
    # planned with (service.webhooks.planning_state); nothing is stored if one changed.
    planned_with: dict[uuid.UUID, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Stored:
    receipts: set[ReceiptKey]
    interactions: set[uuid.UUID]
    # Organizations whose planning state changed since it was read: then nothing was stored.
    stale: set[uuid.UUID] = field(default_factory=set)


NEW_REVISION = 1

# Composed of constants at import (the fingerprint subquery); every value is a parameter.
_PG_STORE = f"""
WITH stale AS (
    SELECT planned.organization_id
    FROM unnest($1::uuid[], $2::text[]) AS planned (organization_id, fingerprint)
    WHERE planned.fingerprint IS DISTINCT FROM
          {FINGERPRINT_OF.format(organization="planned.organization_id")}
), receipts AS (
    INSERT INTO webhook_receipts (organization_id, webhook_id, event_type, received_at)
    SELECT organization_id, webhook_id, event_type, $3::timestamptz
    FROM unnest($5::uuid[], $6::text[], $7::text[]) WITH ORDINALITY
         AS rows (organization_id, webhook_id, event_type, ord)
    WHERE NOT EXISTS (SELECT FROM stale)
    ORDER BY ord
    ON CONFLICT DO NOTHING
    RETURNING organization_id, webhook_id
), interactions AS (
    INSERT INTO interactions (id, organization_id, external_id, payload, event_timestamp,
                              started_at, revision, created_at, updated_at)
    SELECT rows.id, rows.organization_id, rows.external_id, rows.payload::jsonb,
           rows.event_timestamp, rows.started_at, {NEW_REVISION}, $3::timestamptz,
           $3::timestamptz
    FROM unnest($8::uuid[], $9::uuid[], $10::text[], $11::text[], $12::text[],
                $13::timestamptz[], $14::timestamptz[]) WITH ORDINALITY
         AS rows (id, organization_id, webhook_id, external_id, payload, event_timestamp,
                  started_at, ord)
    WHERE EXISTS (SELECT FROM receipts
                  WHERE receipts.organization_id = rows.organization_id
                    AND receipts.webhook_id = rows.webhook_id)
    ORDER BY rows.ord
    ON CONFLICT DO NOTHING
    RETURNING id, organization_id
), deliveries AS (
    INSERT INTO deliveries (id, organization_id, integration_id, interaction_id, trigger_id,
                            trigger_name, status, attempts, next_attempt_at, last_enqueued_at,
                            interaction_revision, newer_revision_after_delivery,
                            created_at, updated_at)
    SELECT rows.id, interactions.organization_id, targets.integration_id, rows.interaction_id,
           targets.trigger_id, targets.trigger_name, targets.status, 0, $3::timestamptz,
           CASE targets.status WHEN '{DeliveryStatus.PENDING}' THEN $4::timestamptz END,
           {NEW_REVISION}, false, $3::timestamptz, $3::timestamptz
    FROM unnest($15::uuid[], $16::uuid[], $17::int[]) AS rows (id, interaction_id, target)
    JOIN interactions ON interactions.id = rows.interaction_id
    JOIN unnest($18::uuid[], $19::uuid[], $20::text[], $21::text[]) WITH ORDINALITY
         AS targets (integration_id, trigger_id, trigger_name, status, number)
         ON targets.number = rows.target
)
SELECT (SELECT array_agg(organization_id) FROM receipts),
       (SELECT array_agg(webhook_id) FROM receipts),
       (SELECT array_agg(id) FROM interactions),
       (SELECT array_agg(organization_id) FROM stale)
"""  # noqa: S608


async def store_postgres(connection: PinnedConnection, rows: BatchRows) -> Stored:
    """The batch as one statement, which commits by itself."""
    receipts, interactions, deliveries = rows.receipts, rows.interactions, rows.deliveries
    targets = rows.targets
    [stored] = await connection.fetch_sql(
        _PG_STORE,
        list(rows.planned_with),
        list(rows.planned_with.values()),
        rows.now,
        rows.enqueued_at,
        receipts.organization_id,
        receipts.webhook_id,
        receipts.event_type,
        interactions.id,
        interactions.organization_id,
        interactions.webhook_id,
        interactions.external_id,
        interactions.payload,
        interactions.event_timestamp,
        interactions.started_at,
        deliveries.id,
        deliveries.interaction_id,
        deliveries.target,
        targets.integration_id,
        targets.trigger_id,
        targets.trigger_name,
        targets.status,
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
    now, targets = rows.now, rows.targets
    result = await session.execute(
        _insert_unless_present(dialect, RECEIPTS).returning(
            RECEIPTS.c.organization_id, RECEIPTS.c.webhook_id
        ),
        [row | {"received_at": now} for row in _as_rows(rows.receipts)],
    )
    receipts: set[ReceiptKey] = {(row[0], row[1]) for row in result}
    interactions = [
        {key: value for key, value in row.items() if key != "webhook_id"}
        | {"revision": NEW_REVISION, "created_at": now, "updated_at": now}
        for row in _as_rows(rows.interactions)
        if (row["organization_id"], row["webhook_id"]) in receipts
    ]
    # The organization of each interaction stored now, for its deliveries.
    inserted: dict[uuid.UUID, uuid.UUID] = {}
    if interactions:
        result = await session.execute(
            _insert_unless_present(dialect, INTERACTIONS).returning(
                INTERACTIONS.c.id, INTERACTIONS.c.organization_id
            ),
            interactions,
        )
        inserted = {row[0]: row[1] for row in result}
    deliveries = []
    for row in _as_rows(rows.deliveries):
        organization_id = inserted.get(row["interaction_id"])
        if organization_id is None:
            continue
        at = row.pop("target") - 1
        status = targets.status[at]
        deliveries.append(
            row
            | {
                "organization_id": organization_id,
                "integration_id": targets.integration_id[at],
                "trigger_id": targets.trigger_id[at],
                "trigger_name": targets.trigger_name[at],
                "status": status,
                "interaction_revision": NEW_REVISION,
                "next_attempt_at": now,
                "last_enqueued_at": rows.enqueued_at if status is DeliveryStatus.PENDING else None,
                "created_at": now,
                "updated_at": now,
            }
        )
    if deliveries:
        await session.execute(insert(DELIVERIES), deliveries)
    return Stored(receipts, set(inserted))


def _as_rows(
    columns: ReceiptColumns | InteractionColumns | DeliveryColumns,
) -> list[dict[str, Any]]:
    names = [column.name for column in fields(columns)]
    return [
        dict(zip(names, values, strict=True))
        for values in zip(*(getattr(columns, name) for name in names), strict=True)
    ]
