import enum
import uuid
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, IdMixin, TimestampMixin, utc_now


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    HELD = "held"  # the integration is disabled or invalid; released on enable
    FAILED = "failed"  # a permanent error; the reason is kept
    DEAD = "dead"  # retries exhausted
    DISCARDED = "discarded"  # held, then discarded by an admin


class Delivery(IdMixin, TimestampMixin, Base):
    """The outbox row: one per (integration, interaction) that matched a trigger.

    Written in the same transaction as the interaction, so an acknowledged interaction never
    loses its deliveries; the database schedule (`next_attempt_at`) is the truth the worker
    and the sweeper act on, whatever happened to the queue.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("integration_id", "interaction_id"),
        # The sweeper's query: what is due.
        Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_deliveries_integration_id_created_at", "integration_id", "created_at"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    integration_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("integrations.id", ondelete="CASCADE")
    )
    interaction_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("interactions.id", ondelete="CASCADE"), index=True
    )
    # The trigger may be deleted later; its name stays for the log and the response.
    trigger_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    trigger_name: Mapped[str] = mapped_column(String(200))
    status: Mapped[DeliveryStatus] = mapped_column(
        Enum(
            DeliveryStatus,
            name="delivery_status",
            native_enum=False,
            length=20,
            values_callable=lambda states: [state.value for state in states],
        ),
        default=DeliveryStatus.PENDING,
    )
    # Attempts that counted (throttling waits do not).
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=utc_now)
    last_enqueued_at: Mapped[datetime | None] = mapped_column(default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    response_id: Mapped[str | None] = mapped_column(String(40), default=None)
    # The interaction revision sent (or to send).
    interaction_revision: Mapped[int] = mapped_column(default=1)
    newer_revision_after_delivery: Mapped[bool] = mapped_column(default=False)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class DeliveryAttempt(IdMixin, Base):
    """One try at creating the response: what Qualtrics answered, or what went wrong."""

    __tablename__ = "delivery_attempts"

    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    started_at: Mapped[datetime] = mapped_column(default=utc_now)
    duration_ms: Mapped[int] = mapped_column(default=0)
    outcome: Mapped[str] = mapped_column(String(30))
    status_code: Mapped[int | None] = mapped_column(default=None)
    error_class: Mapped[str | None] = mapped_column(String(100), default=None)
    # Limited to the first 2048 characters so attempts do not bloat the database.
    response_body: Mapped[str | None] = mapped_column(Text, default=None)
    counted: Mapped[bool] = mapped_column(default=True)
