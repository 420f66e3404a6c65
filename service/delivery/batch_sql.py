"""The statements of `DeliveryBatches` (PostgreSQL), built from the models; they run on the
connections it keeps (service.kit.pinned), compiled once per connection."""

from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Integer,
    String,
    Text,
    Uuid,
    any_,
    bindparam,
    cast,
    column,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from service.delivery.claims import Connection, Parts
from service.delivery.context import Outcome
from service.models import (
    Catalog,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Integration,
    IntegrationHealth,
    Interaction,
    QualtricsConnection,
    QualtricsProject,
)

# A batch statement that takes longer than this is abandoned (its connection discarded), and
# its runs do their step on their own: a database that stopped answering must not hold every
# job of the worker behind one statement.
BATCH_TIMEOUT = 10.0


def parts_of(row: Any) -> Parts | None:
    """What the claim statement read of the delivery's integration (None: there is none)."""
    if row["enabled"] is None:  # no integration row (the outer join found none)
        return None
    connection = None
    if row["client_id"] is not None:
        connection = Connection(
            row["integration_id"],
            row["client_id"],
            row["client_secret_encrypted"],
            row["subdomain"],
            row["brand_id"],
        )
    return Parts(
        integration_id=row["integration_id"],
        enabled=row["enabled"],
        health=IntegrationHealth(row["health"]),
        version=row["integration_version"],
        connection=connection,
        survey_id=row["survey_id"],
        project_updated_at=row["project_updated_at"],
        catalog_version=row["catalog_version"],
    )


# The batch statements, built from the models and compiled once per connection, with
# bind parameters only; arrays carry the rows (`= ANY`, `unnest`), so one statement serves any
# batch size. PostgreSQL types come back as asyncpg gives them (aware UTC datetimes, UUIDs,
# JSON decoded by the codec SQLAlchemy installs); `parts_of` converts the enum.

# Claim: lock the pending, due ones among the ids (skipping rows another transaction holds),
# lease them (`next_attempt_at` = the lease's end) and record the revision that will be sent,
# then read them with their interactions and what their integrations need.
_due = (
    select(Delivery.id)
    .where(
        Delivery.id == any_(bindparam("due_ids", type_=ARRAY(Uuid))),
        # Wrapped, so PostgreSQL finds the rows by id alone: with statistics that lag a surge
        # of pending deliveries (a bulk load, a backlog after an outage) it would otherwise
        # AND in the status index and read every pending row's entry for each batch (measured:
        # 12,000 entries per claim, cost growing with the backlog).
        func.coalesce(Delivery.status, "") == DeliveryStatus.PENDING,
        or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= bindparam("now")),
    )
    .order_by(Delivery.id)
    .with_for_update(skip_locked=True)
    .cte("due")
)
_claimed = (
    update(Delivery)
    .where(Delivery.id == _due.c.id, Interaction.id == Delivery.interaction_id)
    .values(
        next_attempt_at=bindparam("lease_until"),
        interaction_revision=Interaction.revision,
        updated_at=bindparam("now"),
    )
    .returning(
        Delivery.id,
        Delivery.integration_id,
        Delivery.interaction_id,
        Delivery.attempts,
        Delivery.trigger_name,
        # As text: the sender validates it straight from JSON (no dict built in between).
        cast(Interaction.payload, Text).label("payload"),
        Interaction.revision,
    )
    .cte("claimed")
)
CLAIM_DUE = (
    select(
        _claimed,
        Integration.enabled,
        Integration.health,
        Integration.version.label("integration_version"),
        QualtricsConnection.client_id,
        QualtricsConnection.client_secret_encrypted,
        QualtricsConnection.subdomain,
        QualtricsConnection.brand_id,
        QualtricsProject.survey_id,
        QualtricsProject.updated_at.label("project_updated_at"),
        Catalog.version.label("catalog_version"),
    )
    .select_from(_claimed)
    .outerjoin(Integration, Integration.id == _claimed.c.integration_id)
    .outerjoin(QualtricsConnection, QualtricsConnection.integration_id == Integration.id)
    .outerjoin(QualtricsProject, QualtricsProject.integration_id == Integration.id)
    .outerjoin(Catalog, Catalog.organization_id == Integration.organization_id)
    .order_by(_claimed.c.id)
)

# Settle one claimed delivery that cannot be sent, fenced on this batch's lease.
SETTLE = (
    update(Delivery)
    .where(
        Delivery.id == bindparam("settle_id"),
        Delivery.status == DeliveryStatus.PENDING,
        Delivery.next_attempt_at == bindparam("lease_until"),
    )
    .values(
        status=bindparam("status"),
        next_attempt_at=bindparam("next_attempt_at"),
        last_error=bindparam("last_error"),
        updated_at=bindparam("now"),
    )
    .returning(Delivery.id)
)

# Record successes: an attempt row each, and each delivery `delivered` unless it already is
# (not fenced: the response exists in Qualtrics, whatever happened to the row meanwhile).
_succeeded = (
    func.unnest(
        bindparam("attempt_ids", type_=ARRAY(Uuid)),
        bindparam("delivered_ids", type_=ARRAY(Uuid)),
        bindparam("started_ats", type_=ARRAY(DateTime(timezone=True))),
        bindparam("durations", type_=ARRAY(Integer)),
        bindparam("status_codes", type_=ARRAY(Integer)),
        bindparam("response_ids", type_=ARRAY(String)),
        bindparam("revisions", type_=ARRAY(Integer)),
    )
    .table_valued(
        column("attempt_id", Uuid),
        column("delivery_id", Uuid),
        column("started_at", DateTime(timezone=True)),
        column("duration_ms", Integer),
        column("status_code", Integer),
        column("response_id", String),
        column("revision", Integer),
    )
    .render_derived(name="succeeded")
)
_attempts = (
    insert(DeliveryAttempt)
    .from_select(
        ["id", "delivery_id", "started_at", "duration_ms", "outcome", "status_code", "counted"],
        select(
            _succeeded.c.attempt_id,
            _succeeded.c.delivery_id,
            _succeeded.c.started_at,
            _succeeded.c.duration_ms,
            literal(Outcome.DELIVERED.value, String),
            _succeeded.c.status_code,
            true(),
        ),
    )
    .cte("attempts")
)
RECORD_DELIVERED = (
    update(Delivery)
    .add_cte(_attempts)
    .where(
        Delivery.id == _succeeded.c.delivery_id,
        Delivery.status != DeliveryStatus.DELIVERED,
    )
    .values(
        status=DeliveryStatus.DELIVERED,
        delivered_at=bindparam("now"),
        updated_at=bindparam("now"),
        response_id=_succeeded.c.response_id,
        attempts=Delivery.attempts + 1,
        next_attempt_at=None,
        last_error=None,
        interaction_revision=_succeeded.c.revision,
        # An `interaction.updated` that arrived after we encoded: the log says so (§7).
        newer_revision_after_delivery=func.coalesce(
            select(Interaction.revision)
            .where(Interaction.id == Delivery.interaction_id)
            .scalar_subquery()
            > _succeeded.c.revision,
            false(),
            type_=Boolean,
        ),
    )
    .returning(Delivery.id)
)
