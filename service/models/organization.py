from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, IdMixin, TimestampMixin


class Organization(IdMixin, TimestampMixin, Base):
    """A Creovai customer (tenant); every other object belongs to exactly one."""

    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(200))
    # Set by an operator from the CLI, never by the organization's own admins.
    qualtrics_enabled: Mapped[bool] = mapped_column(default=False)
