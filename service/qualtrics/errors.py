"""Everything that can go wrong talking to Qualtrics, classified for the delivery worker.

    QualtricsError                        base: method, path, status, request_id, error_code, ...
     ├── QualtricsTransportError    retry  no usable answer: connect, read or write failed
     │    └── QualtricsTimeout      retry  connect/read/write/pool timeout, or the request deadline
     ├── QualtricsProtocolError            an answer we refuse to trust: a redirect (never
     │                                     followed), an oversized or endless body, non-JSON, or
     │                                     JSON that is not the expected envelope
     └── QualtricsHTTPError                Qualtrics answered with an error status
          ├── QualtricsRateLimited  retry  429; `retry_after` seconds when Retry-After was sent
          ├── QualtricsServerError  retry  5xx; `instance_id` for Qualtrics support
          ├── QualtricsAuthRejected        401 (after one token refresh), or the token endpoint
          │                                refused the client (invalid_client)
          ├── QualtricsForbidden           403: authenticated, not allowed
          ├── QualtricsNotFound            404: e.g. the survey was deleted
          └── QualtricsBadRequest          any other 4xx; `error_code`/`error_message` say why

`retryable` is the worker's whole decision for transient trouble (style lesson 9): retry with
backoff when it is true (for 429, wait `retry_after` without spending an attempt); otherwise
the error is permanent for this request, and the class says what to do (401/404: invalidate
the integration and hold; other 4xx: fail the delivery with the reason).

A protocol error is not retryable: a redirect or a non-envelope answer means the host is not
the Qualtrics API we expect (misconfigured, or a proxy page), and repeating will not change it.

Errors are logged and stored in delivery attempts, so nothing secret may reach them: messages
carry the method and URL *path* only (never a query string, header or credential), and the
body snippet is capped at 2 KB, stripped of control characters, and redacted of the client
secret, the bearer token and token-shaped JSON fields.
"""

import math
import re
import time
from collections.abc import Iterable
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

# Limit stored bodies to the first 2048 characters so attempts do not bloat the database.
MAX_SNIPPET_CHARS = 2048
MAX_FIELD_CHARS = 500
REDACTED = "[redacted]"

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_TOKEN_FIELD = re.compile(
    r'("(?:access_token|refresh_token|id_token|client_secret)"\s*:\s*")[^"]*(")', re.IGNORECASE
)
# A credential (token68) has a digit, a symbol or an inner capital; words ("Basic plan") do not.
_AUTH_SCHEME = re.compile(
    r"\b((?i:Bearer|Basic))\s+"
    r"(?=[A-Za-z0-9._~+/=-]*[0-9._~+/=-]|[A-Za-z0-9._~+/=-]+[A-Z])[A-Za-z0-9._~+/=-]{6,}"
)
_DELTA_SECONDS = re.compile(r"[0-9]{1,10}(?:\.[0-9]+)?")


def sanitize(text: str, *, secrets: Iterable[str] = (), limit: int = MAX_SNIPPET_CHARS) -> str:
    """`text` safe to log: secrets and token fields redacted, control characters gone, capped."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _TOKEN_FIELD.sub(rf"\g<1>{REDACTED}\g<2>", text)
    text = _AUTH_SCHEME.sub(rf"\g<1> {REDACTED}", text)
    text = _CONTROL.sub("", text)
    return text if len(text) <= limit else text[:limit] + "…"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if unusable."""
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP-dates are always GMT; parsedate gives naive for "-0000"
        when = when.replace(tzinfo=UTC)
    delay = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, delay) if math.isfinite(delay) else None


class QualtricsError(Exception):
    """Base of every error raised by the Qualtrics client."""

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        method: str,
        path: str,
        status: int | None = None,
        request_id: str | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
        body_snippet: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.path = path
        self.status = status
        self.request_id = request_id
        self.error_code = error_code
        self.error_message = error_message
        self.body_snippet = body_snippet

    def _fields(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "request_id": self.request_id,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "body_snippet": self.body_snippet,
        }

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={value!r}"
            for name, value in self._fields().items()
            if value is not None and name != "body_snippet"
        )
        return f"{type(self).__name__}({self.message!r}, {shown})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors do not survive the default exception pickling, and arq
        # pickles what a job raises.
        return (_rebuild, (type(self), self.message, self._fields()))


def _rebuild(cls: type[QualtricsError], message: str, fields: dict[str, Any]) -> QualtricsError:
    return cls(message, **fields)


class QualtricsTransportError(QualtricsError):
    """No usable answer: the connection failed or broke (the request may or may not have landed)."""

    retryable = True


class QualtricsTimeout(QualtricsTransportError):
    """A connect, read, write or pool timeout, or the whole request exceeded its deadline."""


class QualtricsProtocolError(QualtricsError):
    """The answer cannot be trusted: redirect, oversized body, non-JSON or wrong envelope."""


class QualtricsHTTPError(QualtricsError):
    """Qualtrics answered with an error status (`status` is always set)."""

    status: int

    def __init__(self, message: str, *, status: int, **fields: Any) -> None:
        super().__init__(message, status=status, **fields)


class QualtricsRateLimited(QualtricsHTTPError):
    """429: too many requests; wait `retry_after` seconds when it is known."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.retry_after = retry_after

    def _fields(self) -> dict[str, Any]:
        return {**super()._fields(), "retry_after": self.retry_after}


class QualtricsServerError(QualtricsHTTPError):
    """5xx: a Qualtrics-side failure; quote `instance_id` and `error_code` to their support."""

    retryable = True

    def __init__(self, message: str, *, instance_id: str | None = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.instance_id = instance_id

    def _fields(self) -> dict[str, Any]:
        return {**super()._fields(), "instance_id": self.instance_id}


class QualtricsAuthRejected(QualtricsHTTPError):
    """The credentials or the token were refused, even after one token refresh."""


class QualtricsForbidden(QualtricsHTTPError):
    """403: the OAuth client may not do this (missing scope or permission, not the owner)."""


class QualtricsNotFound(QualtricsHTTPError):
    """404: the survey (or question) does not exist, or not on this data center."""


class QualtricsBadRequest(QualtricsHTTPError):
    """Any other 4xx: Qualtrics refused the request itself; repeating it will not help."""
