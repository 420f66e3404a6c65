from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base


class LoginThrottle(Base):
    """Failed sign-ins per account name, shared by every api replica through the database.

    Keyed by a hash of the lower-cased email, so unknown accounts are throttled too without
    storing what people typed.
    """

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    window_started_at: Mapped[datetime]
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
