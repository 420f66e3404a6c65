"""What one send came to (`Result`): a success, or what its error means for the delivery
(design §8, `service/qualtrics/errors.py`); and the limiter's cool-down after a 429."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from service.delivery.attempt_log import logger
from service.delivery.claims import Claim
from service.delivery.context import DeliveryContext, Outcome
from service.qualtrics import (
    QualtricsAuthRejected,
    QualtricsError,
    QualtricsNotFound,
    QualtricsRateLimited,
)


@dataclass(frozen=True, slots=True)
class Result:
    """What one send came to, and what to write."""

    outcome: Outcome
    counted: bool
    next_attempt_at: datetime | None = None
    status_code: int | None = None
    error: Exception | None = None
    response_id: str | None = None
    invalidate: str | None = None  # the integration's new health reason
    penalty: timedelta | None = None  # the limiter's cool-down after a 429


def delivered(response_id: str) -> Result:
    # create-response answers 200 with the envelope; anything else raised.
    return Result(Outcome.DELIVERED, counted=True, status_code=200, response_id=response_id)


def classify(context: DeliveryContext, claim: Claim, exc: Exception) -> Result:
    """What an error means for this delivery (design §8, `service/qualtrics/errors.py`)."""
    now, policy = context.clock(), context.policy
    status = exc.status if isinstance(exc, QualtricsError) else None
    if isinstance(exc, QualtricsRateLimited):
        return Result(
            Outcome.RATE_LIMITED,
            counted=False,
            next_attempt_at=now + policy.rate_limit_delay(exc.retry_after, context.rand),
            status_code=status,
            error=exc,
            penalty=policy.rate_limit_wait(exc.retry_after),
        )
    attempts = claim.attempts + 1
    # Not a QualtricsError: refused before anything was sent (a stored secret no configured
    # key decrypts, a stored id or subdomain this code no longer accepts), which an operator
    # can fix, or an unexpected error. Retried on the schedule rather than failed at once.
    retryable = exc.retryable if isinstance(exc, QualtricsError) else True
    if retryable:
        if policy.exhausted(attempts):
            return Result(Outcome.DEAD, counted=True, status_code=status, error=exc)
        delay = policy.retry_delay(attempts, context.rand)
        return Result(
            Outcome.RETRY_SCHEDULED,
            counted=True,
            next_attempt_at=now + delay,
            status_code=status,
            error=exc,
        )
    if isinstance(exc, QualtricsAuthRejected):
        reason = (
            "Qualtrics rejected the credentials, even after a token refresh: save working "
            "credentials (step 1), then enable the integration again."
        )
        return Result(Outcome.HELD, True, status_code=status, error=exc, invalidate=reason)
    if isinstance(exc, QualtricsNotFound):
        reason = (
            f"The survey {claim.survey_id} was deleted in Qualtrics (or these credentials "
            "cannot reach it): create a new project (step 2), then enable the integration again."
        )
        return Result(Outcome.HELD, True, status_code=status, error=exc, invalidate=reason)
    # A redirect, an untrustworthy answer, 403 or any other 4xx: repeating will not help.
    return Result(Outcome.FAILED, counted=True, status_code=status, error=exc)


async def penalize(context: DeliveryContext, key: str, wait: timedelta) -> None:
    try:
        await context.limiter.penalize(key, wait.total_seconds())
    except Exception:  # the delivery is rescheduled anyway; the limiter must not lose it
        logger.warning("could not apply the rate-limit cool-down for %s", key, exc_info=True)
