import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, IdMixin, TimestampMixin


class IntegrationHealth(enum.StrEnum):
    OK = "ok"
    INVALID = "invalid"


class Integration(IdMixin, TimestampMixin, Base):
    __tablename__ = "integrations"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(default=False)
    health: Mapped[IntegrationHealth] = mapped_column(
        Enum(
            IntegrationHealth,
            name="integration_health",
            native_enum=False,
            length=20,
            values_callable=lambda states: [state.value for state in states],
        ),
        default=IntegrationHealth.OK,
    )
    health_reason: Mapped[str | None] = mapped_column(String(500), default=None)
    # Step 3: the ordered data field selections (service.data_fields.schemas.DataField);
    # None until the admin saves them.
    data_fields: Mapped[list[dict[str, Any]] | None] = mapped_column(default=None)
    # Set the first time it is enabled: from then on, matches while disabled are held.
    first_enabled_at: Mapped[datetime | None] = mapped_column(default=None)
    # Optimistic concurrency: bumped on every UPDATE, exposed as the ETag.
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012
