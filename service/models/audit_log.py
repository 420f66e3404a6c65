import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, IdMixin, TimestampMixin


class AuditLogEntry(IdMixin, TimestampMixin, Base):
    """Who did what to which object. Rows are never updated or deleted by the service."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_organization_id_created_at", "organization_id", "created_at"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    # No foreign keys below: the history must outlive deleted users and integrations.
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(100))
    integration_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None, index=True)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
