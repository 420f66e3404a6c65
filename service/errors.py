"""Every error the API answers, as RFC 9457 problem details, rendered by one set of handlers.

    ServiceError                      any 4xx the service answers on purpose
     ├── BadRequest            400
     ├── Unauthorized          401    missing, invalid or expired credentials
     │    └── StepUpRequired   401    a recent authentication is needed (RFC 9470 challenge)
     ├── Forbidden             403
     ├── NotFound              404    also for other organizations' objects
     ├── Conflict              409
     ├── PreconditionFailed    412    stale If-Match
     ├── PayloadTooLarge       413
     ├── UnprocessableEntity   422    field errors in `errors[]`
     ├── TooManyRequests       429    with Retry-After
     └── ServiceUnavailable    503    a dependency (database) is down; retry later

Anything else that escapes a handler is a bug: it is logged with its traceback and answered
with a bare 500 problem that reveals nothing about it.
"""

import logging
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://docs.creovai-connector.example/problems/"


class FieldError(BaseModel):
    """One invalid field: where it is (a JSON pointer into the request) and what is wrong."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"pointer": "/body/name", "detail": "Field required"}],
        }
    )

    pointer: str = Field(description="JSON pointer to the field, rooted at its request part.")
    detail: str = Field(description="What is wrong with it.")


class Problem(BaseModel):
    """RFC 9457 problem details: the body of every error response."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": PROBLEM_TYPE_BASE + "not-found",
                    "title": "Not Found",
                    "status": 404,
                    "detail": "Integration 6f1c... was not found.",
                }
            ]
        }
    )

    type: str = Field(description="A URI identifying the kind of problem.")
    title: str = Field(description="Short, human-readable summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str | None = Field(default=None, description="What went wrong this time.")
    errors: list[FieldError] | None = Field(
        default=None, description="Field errors, for 400 and 422 answers."
    )


class ServiceError(Exception):
    status_code: int = 400
    slug: str = "bad-request"

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors) if errors else None
        self.headers = dict(headers or {})
        # Additional problem members (RFC 9457 §3.2), e.g. the incomplete steps of a 409.
        self.extra = dict(extra or {})

    @property
    def title(self) -> str:
        return HTTPStatus(self.status_code).phrase


class BadRequest(ServiceError):
    status_code = 400
    slug = "bad-request"


class Unauthorized(ServiceError):
    status_code = 401
    slug = "unauthorized"

    def __init__(self, detail: str = "Authentication is required.", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kwargs)


class StepUpRequired(Unauthorized):
    slug = "step-up-required"


class Forbidden(ServiceError):
    status_code = 403
    slug = "forbidden"


class NotFound(ServiceError):
    status_code = 404
    slug = "not-found"


class Conflict(ServiceError):
    status_code = 409
    slug = "conflict"


class PreconditionFailed(ServiceError):
    status_code = 412
    slug = "precondition-failed"


class PayloadTooLarge(ServiceError):
    status_code = 413
    slug = "payload-too-large"


class UnprocessableEntity(ServiceError):
    status_code = 422
    slug = "validation-failed"


class TooManyRequests(ServiceError):
    status_code = 429
    slug = "too-many-requests"


class ServiceUnavailable(ServiceError):
    status_code = 503
    slug = "service-unavailable"


def _slug_for_status(status_code: int) -> str:
    return HTTPStatus(status_code).phrase.lower().replace(" ", "-").replace("'", "")


def problem_response(
    status_code: int,
    *,
    slug: str | None = None,
    detail: str | None = None,
    errors: Sequence[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + (slug or _slug_for_status(status_code)),
        "title": HTTPStatus(status_code).phrase,
        "status": status_code,
    }
    if detail is not None:
        body["detail"] = detail
    if errors:
        body["errors"] = [error.model_dump() for error in errors]
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status_code, headers=headers, media_type=PROBLEM_JSON)


def _pointer(location: Iterable[Any]) -> str:
    parts = [str(part).replace("~", "~0").replace("/", "~1") for part in location]
    return "/" + "/".join(parts)


def _validation_problem(exc: RequestValidationError) -> JSONResponse:
    raw_errors = exc.errors()
    # A body that is not JSON at all is a malformed request (400), not an invalid entity.
    if any(error.get("type") == "json_invalid" for error in raw_errors):
        return problem_response(
            400, slug="malformed-json", detail="The request body is not valid JSON."
        )
    errors = [
        FieldError(pointer=_pointer(error.get("loc", ())), detail=str(error.get("msg", "")))
        for error in raw_errors
    ]
    return problem_response(
        422,
        slug=UnprocessableEntity.slug,
        detail=f"The request has {len(errors)} invalid field(s).",
        errors=errors,
    )


async def _handle_service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)  # noqa: S101 (registered for ServiceError only)
    return problem_response(
        exc.status_code,
        slug=exc.slug,
        detail=exc.detail,
        errors=exc.errors,
        headers=exc.headers,
        extra=exc.extra,
    )


async def _handle_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    return _validation_problem(exc)


async def _handle_http_exception(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    return problem_response(
        exc.status_code, detail=str(exc.detail) if exc.detail else None, headers=exc.headers
    )


async def _handle_stale_data(_: Request, exc: Exception) -> JSONResponse:
    # Two writers raced past their If-Match checks; the version column caught the second.
    return problem_response(
        412,
        slug=PreconditionFailed.slug,
        detail="The object was changed by someone else at the same time; read it again and retry.",
    )


async def _handle_integrity_error(request: Request, exc: Exception) -> JSONResponse:
    # Constraint races that a service's own checks could not see (two creates at once).
    logger.info("integrity conflict on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(
        409,
        slug=Conflict.slug,
        detail="The change conflicts with a concurrent change; read the current state and retry.",
    )


async def _handle_database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # Nothing was stored: the sender must retry, and should learn that quickly (never a 2xx).
    logger.error(
        "database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__
    )
    return problem_response(
        503,
        slug=ServiceUnavailable.slug,
        detail="The database is unavailable; nothing was stored. Retry shortly.",
        headers={"Retry-After": "5"},
    )


# What a database that cannot be reached raises: through SQLAlchemy, or straight from asyncpg
# (the connections intake's writers keep, service.kit.pinned). OSError covers timeouts.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    SQLAlchemyTimeoutError,
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)


async def _handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(500, detail="An unexpected error occurred; it has been logged.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _handle_service_error)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_exception_handler(StaleDataError, _handle_stale_data)
    app.add_exception_handler(IntegrityError, _handle_integrity_error)
    for unavailable in DATABASE_UNAVAILABLE:
        app.add_exception_handler(unavailable, _handle_database_unavailable)
    app.add_exception_handler(Exception, _handle_unexpected)


_DESCRIPTIONS = {
    400: "Malformed request.",
    401: "Not authenticated, token expired, or a recent authentication is required (step-up).",
    403: "Authenticated, but not allowed (viewer on an admin route, feature not enabled).",
    404: "No such object in the caller's organization.",
    409: "Conflicts with the current state.",
    412: "The If-Match ETag is stale: someone else changed the object; re-read and retry.",
    413: "The request body is too large.",
    422: "The request is well-formed but has invalid fields (listed in `errors`).",
    429: "Too many requests; retry after the Retry-After seconds.",
    503: "A dependency is unavailable; retry later.",
}


def problem_responses(*status_codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting each listed problem status."""
    return {
        code: {
            "model": Problem,
            "description": _DESCRIPTIONS.get(code, HTTPStatus(code).phrase),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for code in status_codes
    }
