import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, TimestampMixin


class QualtricsProject(TimestampMixin, Base):
    """Step 2: the survey created in Qualtrics for the integration, and how fields map to it."""

    __tablename__ = "qualtrics_projects"

    integration_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("integrations.id", ondelete="CASCADE"), primary_key=True
    )
    survey_id: Mapped[str] = mapped_column(String(32))
    survey_name: Mapped[str] = mapped_column(String(200))
    default_block_id: Mapped[str] = mapped_column(String(32))
    # Target key of each data field → its question id or embedded-data field (see
    # service.data_fields). Grows only: nothing is ever deleted from Qualtrics.
    field_map: Mapped[dict[str, Any]] = mapped_column(default=dict)
    published_version_id: Mapped[str | None] = mapped_column(String(40), default=None)
    published_version_number: Mapped[int | None] = mapped_column(default=None)
    synced_at: Mapped[datetime | None] = mapped_column(default=None)
