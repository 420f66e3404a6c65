import uuid
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, IdMixin, TimestampMixin


class Trigger(IdMixin, TimestampMixin, Base):
    """Step 4: named criteria deciding which interactions an integration delivers."""

    __tablename__ = "triggers"
    __table_args__ = (UniqueConstraint("integration_id", "name"),)

    integration_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("integrations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(default=True)
    # Evaluation order: the first matching trigger is the one recorded on a delivery.
    position: Mapped[int]
    criteria: Mapped[dict[str, Any]] = mapped_column(default=dict)
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012
