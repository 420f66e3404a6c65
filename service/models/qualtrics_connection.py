import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, TimestampMixin


class QualtricsConnection(TimestampMixin, Base):
    """Step 1: the integration's Qualtrics OAuth client, verified before it was saved."""

    __tablename__ = "qualtrics_connections"

    integration_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("integrations.id", ondelete="CASCADE"), primary_key=True
    )
    client_id: Mapped[str] = mapped_column(String(200))
    # Write-only: a Fernet token; the API shows at most the last four characters.
    client_secret_encrypted: Mapped[str] = mapped_column(Text)
    client_secret_last4: Mapped[str] = mapped_column(String(4))
    subdomain: Mapped[str] = mapped_column(String(63))
    verified_at: Mapped[datetime]
    # From `whoami` at verification: the brand keys the shared rate limiter.
    brand_id: Mapped[str | None] = mapped_column(String(200), default=None)
    qualtrics_user_id: Mapped[str | None] = mapped_column(String(200), default=None)
    qualtrics_user_name: Mapped[str | None] = mapped_column(String(320), default=None)
    datacenter: Mapped[str | None] = mapped_column(String(50), default=None)
