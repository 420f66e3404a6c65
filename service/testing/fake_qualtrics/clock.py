"""A clock tests control: token expiry, the rate limiter and response visibility read it."""

from datetime import UTC, datetime, timedelta


class FakeClock:
    """Real UTC time by default; `set` freezes it at an instant, `advance` moves it forward."""

    def __init__(self) -> None:
        self._frozen_at: datetime | None = None
        self._offset = timedelta()

    def now(self) -> datetime:
        if self._frozen_at is not None:
            return self._frozen_at
        return datetime.now(UTC) + self._offset

    def set(self, when: datetime | None) -> None:
        """Freeze at `when` (timezone-aware); `None` returns to real time."""
        if when is not None and when.tzinfo is None:
            raise ValueError("the fake clock needs a timezone-aware datetime")
        self._frozen_at = when
        self._offset = timedelta()

    def advance(self, seconds: float) -> None:
        step = timedelta(seconds=seconds)
        if self._frozen_at is not None:
            self._frozen_at += step
        else:
            self._offset += step


def iso(when: datetime) -> str:
    """`2024-05-01T10:00:00Z`: the ISO form Qualtrics uses in JSON."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def mysql(when: datetime) -> str:
    """`2024-05-01 10:00:00`: the MySQL form of survey-metadata dates."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
