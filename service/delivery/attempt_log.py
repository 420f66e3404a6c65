"""How a delivery run reports itself: one structured log line per attempt, one per delivery
held, failed or skipped before sending, and the error texts that rows and logs carry (capped,
without interaction values or secrets)."""

import logging
import uuid
from typing import TYPE_CHECKING

from pydantic import ValidationError

from service.delivery.context import Outcome
from service.models import Delivery
from service.qualtrics import QualtricsError
from service.qualtrics.errors import sanitize

if TYPE_CHECKING:
    from service.delivery.claims import Claim, Due
    from service.delivery.classify import Result

# Every step of a run logs here, whichever module holds it: log filters and dashboards select
# the delivery lines by this name, which is the one the steps had when they were one module.
logger = logging.getLogger("service.delivery.sender")

MAX_REASON_CHARS = 1000


def log_attempt(
    claim: "Claim",
    outcome: Outcome,
    result: "Result | None",
    duration_ms: int,
    request_id: str | None,
    *,
    attempt: int,
) -> None:
    """One structured line per attempt: ids, outcome, status; never values or secrets."""
    error = None if result is None else result.error
    status = None if result is None else result.status_code
    counted = result is not None and result.counted
    error_class = None if error is None else type(error).__name__
    qualtrics_request_id = getattr(error, "request_id", None)
    warn = outcome in (Outcome.FAILED, Outcome.DEAD, Outcome.HELD)
    level = logging.WARNING if warn else logging.INFO
    logger.log(
        level,
        "delivery attempt: delivery_id=%s integration_id=%s outcome=%s status=%s attempt=%s "
        "counted=%s error=%s qualtrics_request_id=%s duration_ms=%d request_id=%s",
        claim.delivery_id,
        claim.integration_id,
        outcome.value,
        status,
        attempt,
        counted,
        error_class,
        qualtrics_request_id,
        duration_ms,
        request_id,
        extra={
            "delivery_id": str(claim.delivery_id),
            "integration_id": str(claim.integration_id),
            "outcome": outcome.value,
            "status_code": status,
            "attempt": attempt,
            "counted": counted,
            "error_class": error_class,
            "qualtrics_request_id": qualtrics_request_id,
            "duration_ms": duration_ms,
            "request_id": request_id,
        },
    )


def log_settled(delivery: "Delivery | Due", outcome: Outcome, request_id: str | None) -> None:
    logger.log(
        logging.WARNING if outcome is Outcome.FAILED else logging.INFO,
        "delivery %s %s before sending (integration %s, request_id=%s)",
        delivery.id,
        outcome.value,
        delivery.integration_id,
        request_id,
        extra={
            "delivery_id": str(delivery.id),
            "integration_id": str(delivery.integration_id),
            "outcome": outcome.value,
            "request_id": request_id,
        },
    )


def skip(delivery_id: uuid.UUID, why: str, request_id: str | None) -> Outcome:
    logger.debug("delivery %s skipped: %s (request_id=%s)", delivery_id, why, request_id)
    return Outcome.SKIPPED


def describe(exc: Exception) -> str:
    # QualtricsError messages carry the method, path, status and Qualtrics' error text only.
    text = exc.message if isinstance(exc, QualtricsError) else str(exc)
    return sanitize(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def problems(exc: ValidationError) -> str:
    """A validation error without the offending input (it may be personal data)."""
    shown = [
        f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)[:5]
    ]
    more = exc.error_count() - len(shown)
    return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
