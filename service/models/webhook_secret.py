import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, IdMixin, TimestampMixin


class WebhookSecret(IdMixin, TimestampMixin, Base):
    """A Standard Webhooks signing secret; several may be active while a rotation is under way."""

    __tablename__ = "webhook_secrets"

    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    # Fernet token of the `whsec_...` secret; never stored or logged in the clear.
    secret_encrypted: Mapped[str] = mapped_column(Text)
    # After this moment the secret no longer verifies signatures (the end of a rotation window).
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
