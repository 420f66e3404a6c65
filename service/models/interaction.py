import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, IdMixin, TimestampMixin


class Interaction(IdMixin, TimestampMixin, Base):
    """A completed call or chat as the platform delivered it, plus columns triggers query.

    Unique per (organization, Creovai id); an `interaction.updated` replaces `payload` when
    its event timestamp is newer than `event_timestamp`.
    """

    __tablename__ = "interactions"
    __table_args__ = (
        UniqueConstraint("organization_id", "external_id"),
        Index("ix_interactions_organization_id_started_at", "organization_id", "started_at"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    external_id: Mapped[str] = mapped_column(String(200))
    # The validated `data` object of the webhook, as JSON.
    payload: Mapped[dict[str, Any]]
    event_timestamp: Mapped[datetime]
    started_at: Mapped[datetime]
    # 1 for the first version; +1 for each newer `interaction.updated`.
    revision: Mapped[int] = mapped_column(default=1)
