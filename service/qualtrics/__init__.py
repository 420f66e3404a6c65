"""The Qualtrics API v3 client: validated URLs, OAuth tokens, typed calls, classified errors.

Typical use (the worker or api owns the AsyncClient and the TokenManager for its lifetime):

    http = create_http_client()
    tokens = TokenManager(RedisTokenCache(redis))
    client = QualtricsClient(http, credentials, tokens=tokens, base_url_template=template)
    response_id = await client.create_response(survey_id, values, idempotency_key=delivery_id)
"""

from service.qualtrics.client import QualtricsClient, QualtricsCredentials
from service.qualtrics.errors import (
    QualtricsAuthRejected,
    QualtricsBadRequest,
    QualtricsError,
    QualtricsForbidden,
    QualtricsHTTPError,
    QualtricsNotFound,
    QualtricsProtocolError,
    QualtricsRateLimited,
    QualtricsServerError,
    QualtricsTimeout,
    QualtricsTransportError,
)
from service.qualtrics.models import CreatedSurvey, PublishedVersion, WhoAmI
from service.qualtrics.tokens import (
    CachedToken,
    InMemoryTokenCache,
    RedisTokenCache,
    TokenCache,
    TokenManager,
)
from service.qualtrics.transport import create_http_client
from service.qualtrics.urls import (
    DEFAULT_BASE_URL_TEMPLATE,
    InvalidBaseUrlTemplate,
    InvalidSubdomain,
    build_base_url,
    validate_subdomain,
)

__all__ = [
    "DEFAULT_BASE_URL_TEMPLATE",
    "CachedToken",
    "CreatedSurvey",
    "InMemoryTokenCache",
    "InvalidBaseUrlTemplate",
    "InvalidSubdomain",
    "PublishedVersion",
    "QualtricsAuthRejected",
    "QualtricsBadRequest",
    "QualtricsClient",
    "QualtricsCredentials",
    "QualtricsError",
    "QualtricsForbidden",
    "QualtricsHTTPError",
    "QualtricsNotFound",
    "QualtricsProtocolError",
    "QualtricsRateLimited",
    "QualtricsServerError",
    "QualtricsTimeout",
    "QualtricsTransportError",
    "RedisTokenCache",
    "TokenCache",
    "TokenManager",
    "WhoAmI",
    "build_base_url",
    "create_http_client",
    "validate_subdomain",
]
