"""Settings of the fake: behaviour the reference marks [U] is a setting here, not a guess."""

import re
import uuid
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_OVERSIZED_BODY_BYTES = 10 * 1024 * 1024


class RateLimit(BaseModel):
    """A limiter per brand (token bucket) and/or per token (requests in flight) [U: no official
    numbers, qualtrics-api.md §6.1]. Exceeding either answers 429 with the error envelope.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests_per_second: float | None = Field(default=None, gt=0)
    burst: int | None = Field(
        default=None, ge=1, description="bucket size; default: one second's worth, at least 1"
    )
    max_concurrent_per_token: int | None = Field(default=None, ge=1)
    retry_after: bool = Field(
        default=True,
        description="send `Retry-After` (whole seconds until a request would pass) [U]",
    )


class FakeQualtricsConfig(BaseModel):
    """Everything tests, the demo or a benchmark may want to change; assignments are validated.

    Change it on a running fake with `fake.config.<field> = value` or `PATCH /_fake/config`.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    token_ttl_seconds: int = Field(default=3600, ge=1, description="`expires_in` of tokens [C]")
    strict_question_types: bool = Field(
        default=True,
        description=(
            "check QuestionType/Selector/SubSelector combinations per spec variant; when off "
            "only the global enums are checked [U: how strict the real API is]"
        ),
    )
    strict_response_values: bool = Field(
        default=True,
        description=(
            "check create-response `values` against the survey (questions, choices, declared "
            "embedded data, metadata keys); when off any object is stored [U]"
        ),
    )
    require_active_survey_for_responses: bool = Field(
        default=False, description="refuse responses to inactive surveys with 400 [U]"
    )
    response_visibility_delay_seconds: float = Field(
        default=0.0,
        ge=0,
        description="GET of a response answers 202 'not yet available' this long after creation",
    )
    latency_seconds: float = Field(
        default=0.0, ge=0, description="added to every API call (real time, not the fake clock)"
    )
    rate_limit: RateLimit | None = None
    list_page_size: int = Field(default=100, ge=1, description="page size of GET /surveys")
    request_log_size: int = Field(
        default=10_000, ge=0, description="requests kept for inspection (from the next reset)"
    )


class FaultKind(StrEnum):
    STATUS = "status"  # an error envelope with `status` (5xx get an instanceId)
    HANG = "hang"  # wait `seconds`, then answer normally
    RESET = "reset"  # send the status line and headers, then drop the connection
    REDIRECT = "redirect"  # 302 to `location`
    BODY = "body"  # 200 with a `body_bytes`-long body, or an endless one


class FaultPhase(StrEnum):
    BEFORE = "before"  # instead of handling the request
    AFTER = "after"  # after handling it (the state changed, the client sees the fault)


class Fault(BaseModel):
    """One injected fault, applied to the next `count` API requests that match it.

    `path_pattern` is a regular expression searched in the path without its `/{subdomain}`
    prefix, e.g. `/API/v3/surveys/SV_[^/]+/responses$` or `/oauth2/token`. `count=None` keeps
    the fault until the faults are cleared.

    An endless body (`kind=body`, `body_bytes=None`) only ends when the client disconnects, so
    use it over a real socket: an in-process `httpx.ASGITransport` buffers whole bodies and would
    wait forever.
    """

    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    path_pattern: str = ".*"
    method: str | None = None
    datacenter: str | None = None
    count: int | None = Field(default=1, ge=1)
    phase: FaultPhase = FaultPhase.BEFORE
    status: int = Field(default=500, ge=400, le=599)
    error_code: str | None = None
    error_message: str | None = None
    retry_after: int | None = Field(default=None, ge=0)
    seconds: float = Field(default=0.0, ge=0)
    location: str = "https://example.invalid/elsewhere"
    body_bytes: int | None = Field(default=DEFAULT_OVERSIZED_BODY_BYTES, ge=0)
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)

    @field_validator("path_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        return value

    @field_validator("method")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return None if value is None else value.upper()

    def matches(self, method: str, path: str, datacenter: str) -> bool:
        return (
            (self.method is None or self.method == method)
            and (self.datacenter is None or self.datacenter == datacenter)
            and re.search(self.path_pattern, path) is not None
        )
