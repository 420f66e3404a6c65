"""Qualtrics failures during setup steps, as the admin's problem answers.

The admin's request cannot succeed, but nothing the admin sent is malformed: rejected
credentials, an unknown subdomain and an unreachable host are each a distinct 422 (a `type`
the front end can branch on and a sentence the admin can act on); Qualtrics being down or
throttling us is a 503 with Retry-After, because trying again later will work.
"""

from service.errors import Conflict, ServiceError, ServiceUnavailable, UnprocessableEntity
from service.qualtrics import (
    QualtricsAuthRejected,
    QualtricsError,
    QualtricsForbidden,
    QualtricsNotFound,
    QualtricsProtocolError,
    QualtricsRateLimited,
    QualtricsServerError,
    QualtricsTransportError,
)


class QualtricsCredentialsRejected(UnprocessableEntity):
    slug = "qualtrics-credentials-rejected"


class QualtricsSubdomainUnknown(UnprocessableEntity):
    slug = "qualtrics-subdomain-unknown"


class QualtricsUnreachable(UnprocessableEntity):
    slug = "qualtrics-unreachable"


class QualtricsPermissionDenied(UnprocessableEntity):
    slug = "qualtrics-permission-denied"


class QualtricsUnexpectedAnswer(UnprocessableEntity):
    slug = "qualtrics-unexpected-answer"


class QualtricsRejectedRequest(UnprocessableEntity):
    slug = "qualtrics-rejected-request"


class QualtricsUnavailable(ServiceUnavailable):
    slug = "qualtrics-unavailable"


class SurveyNotFound(Conflict):
    slug = "qualtrics-survey-not-found"


def verification_problem(exc: QualtricsError, *, subdomain: str, host: str) -> ServiceError:
    """What to tell the admin when credentials could not be verified."""
    if isinstance(exc, QualtricsAuthRejected):
        return QualtricsCredentialsRejected(
            f"Qualtrics rejected the client ID and secret for subdomain {subdomain!r}: check "
            "both in Qualtrics (Account settings → Qualtrics IDs → OAuth clients)."
        )
    if isinstance(exc, QualtricsNotFound):
        return QualtricsSubdomainUnknown(
            f"Qualtrics does not know the subdomain {subdomain!r}: use the data center or "
            "brand host of your account, e.g. `iad1` or `yourbrand.iad1`."
        )
    return call_problem(exc, host=host)


def call_problem(exc: QualtricsError, *, host: str) -> ServiceError:
    """What to tell the admin when a setup call to Qualtrics failed."""
    if isinstance(exc, QualtricsAuthRejected):
        return QualtricsCredentialsRejected(
            "Qualtrics no longer accepts the saved credentials: enter them again (step 1)."
        )
    if isinstance(exc, QualtricsNotFound):
        return SurveyNotFound(
            "The survey no longer exists in Qualtrics (it was deleted there): "
            "create a new project (step 2)."
        )
    if isinstance(exc, QualtricsTransportError):
        return QualtricsUnreachable(
            f"Could not reach Qualtrics at {host}: check the subdomain, or try again if "
            "Qualtrics is having an outage."
        )
    if isinstance(exc, QualtricsRateLimited | QualtricsServerError):
        retry_after = getattr(exc, "retry_after", None) or 30
        return QualtricsUnavailable(
            "Qualtrics is unavailable or throttling requests right now; try again shortly.",
            headers={"Retry-After": str(int(retry_after))},
        )
    if isinstance(exc, QualtricsForbidden):
        return QualtricsPermissionDenied(
            "The Qualtrics OAuth client is not allowed to do this: give it the survey "
            "read and write permissions (scopes) in Qualtrics."
        )
    if isinstance(exc, QualtricsProtocolError):
        return QualtricsUnexpectedAnswer(
            f"{host} did not answer like the Qualtrics API (a redirect or an unexpected "
            "body): check the subdomain."
        )
    return QualtricsRejectedRequest(f"Qualtrics refused the request: {exc}")
