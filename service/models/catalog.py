import uuid
from typing import Any

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, TimestampMixin


class Catalog(TimestampMixin, Base):
    """An organization's catalogue: categories, groups, scores, metadata fields, group types.

    Stored as one validated document because it is always read and replaced whole (by
    `PUT /v1/catalog` or a `catalog.updated` event); `version` backs its ETag.
    """

    __tablename__ = "catalogs"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    document: Mapped[dict[str, Any]]
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012
