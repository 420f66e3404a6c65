"""Turning a raw Qualtrics answer into a typed result or a classified error.

Pure functions over an already-read `Answer`, kept apart from the HTTP plumbing in
`client.py` so each rule (status → error class, envelope shape, token grant) reads on its own.
Qualtrics answers are untrusted input (OWASP API10): anything unexpected becomes a
`QualtricsProtocolError`, and nothing from a token answer is ever echoed, since it may hold a
token.
"""

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from service.qualtrics.errors import (
    QualtricsAuthRejected,
    QualtricsBadRequest,
    QualtricsForbidden,
    QualtricsHTTPError,
    QualtricsNotFound,
    QualtricsProtocolError,
    QualtricsRateLimited,
    QualtricsServerError,
    parse_retry_after,
    sanitize,
)
from service.qualtrics.models import Envelope
from service.qualtrics.tokens import TokenGrant

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)

# Qualtrics documents about an hour (qualtrics-api.md §2b); assume it when `expires_in` is absent.
DEFAULT_TOKEN_LIFETIME = 3600.0
MAX_TOKEN_LIFETIME = 24 * 3600.0
# What may go into an `Authorization: Bearer` header: visible ASCII.
_HEADER_TOKEN = re.compile(r"[\x21-\x7e]{1,4096}")
# Token-endpoint errors (RFC 6749 §5.2) that mean "these credentials will not work".
_REJECTED_CLIENT = frozenset({"invalid_client", "unauthorized_client", "invalid_grant"})


@dataclass(frozen=True, slots=True)
class Answer:
    """A response as read: status, headers, at most `limit` bytes of body, and whether more came."""

    status: int
    headers: httpx.Headers
    body: bytes
    truncated: bool
    limit: int


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful answer's envelope, and the call it answers (for error messages)."""

    envelope: Envelope
    method: str
    path: str

    def model(self, model: type[ModelT]) -> ModelT:
        try:
            return model.model_validate(self.envelope.result)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'result'}: {error['msg']}"
                for error in exc.errors(include_input=False, include_url=False)[:5]
            )
            raise self._unexpected(sanitize(problems, limit=500)) from None

    def object(self) -> dict[str, Any]:
        if not isinstance(self.envelope.result, dict):
            raise self._unexpected("not an object")
        return self.envelope.result

    def _unexpected(self, why: str) -> QualtricsProtocolError:
        return QualtricsProtocolError(
            f"Qualtrics answered {self.method} {self.path} with an unexpected result: {why}",
            method=self.method,
            path=self.path,
        )


def raise_for_status(
    method: str,
    path: str,
    answer: Answer,
    *,
    redact: tuple[str, ...],
    now: float,
    token_endpoint: bool = False,
) -> None:
    """Raise the `QualtricsError` an answer's status calls for; return on a 2xx.

    `redact` lists the secrets this exchange used, so an echo of them never reaches the error.
    """
    status = answer.status
    if 200 <= status < 300:
        return
    snippet = sanitize(answer.body.decode("utf-8", "replace"), secrets=redact)
    where = f"{method} {path} -> {status}"
    if 300 <= status < 400:
        raise QualtricsProtocolError(
            f"Qualtrics answered {where} with a redirect{_location(answer)}; redirects are "
            "never followed (check the subdomain: use the data center Qualtrics names)",
            method=method,
            path=path,
            status=status,
            body_snippet=snippet,
        )
    if not 400 <= status < 600:
        raise QualtricsProtocolError(
            f"Qualtrics answered {where}, which is not an HTTP status we understand",
            method=method,
            path=path,
            status=status,
            body_snippet=snippet,
        )
    details = _error_details(answer.body, redact)
    code, text = details.get("error_code"), details.get("error_message")
    reason = "".join(
        (
            f" {code}" if code else "",
            f": {text}" if text else "",
            f" (requestId {details['request_id']})" if details.get("request_id") else "",
        )
    )
    fields: dict[str, Any] = {
        "method": method,
        "path": path,
        "status": status,
        "request_id": details.get("request_id"),
        "error_code": code,
        "error_message": text,
        "body_snippet": snippet,
    }
    if status == 401 or (token_endpoint and status == 400 and code in _REJECTED_CLIENT):
        what = "refused the client credentials" if token_endpoint else "rejected the access token"
        after = "" if token_endpoint else " even after a token refresh"
        raise QualtricsAuthRejected(f"Qualtrics {what}{after}: {where}{reason}", **fields)
    if status == 429:
        retry_after = parse_retry_after(answer.headers.get("Retry-After"), now=now)
        wait = f" (Retry-After {retry_after:g} s)" if retry_after is not None else ""
        raise QualtricsRateLimited(
            f"Qualtrics rate-limited {where}{reason}{wait}", retry_after=retry_after, **fields
        )
    if status >= 500:
        instance = details.get("instance_id")
        raise QualtricsServerError(
            f"Qualtrics failed on {where}{reason}"
            + (f" (instanceId {instance})" if instance else ""),
            instance_id=instance,
            **fields,
        )
    kind: type[QualtricsHTTPError] = {
        403: QualtricsForbidden,
        404: QualtricsNotFound,
    }.get(status, QualtricsBadRequest)
    verb = {403: "forbade", 404: "found nothing for"}.get(status, "refused")
    raise kind(f"Qualtrics {verb} {where}{reason}", **fields)


def parse_envelope(
    method: str,
    path: str,
    answer: Answer,
    *,
    redact: tuple[str, ...],
    require_result: bool,
) -> Envelope:
    """The envelope of a 2xx answer, or `QualtricsProtocolError` saying what is wrong with it."""

    def refuse(what: str) -> NoReturn:
        raise QualtricsProtocolError(
            f"Qualtrics answered {method} {path} -> {answer.status} with {what}",
            method=method,
            path=path,
            status=answer.status,
            body_snippet=sanitize(answer.body.decode("utf-8", "replace"), secrets=redact),
        )

    if answer.truncated:
        refuse(f"a body over the {answer.limit}-byte limit")
    if not require_result and not answer.body.strip():
        return Envelope()
    try:
        data = json.loads(answer.body)
    except (ValueError, RecursionError):
        refuse("a body that is not JSON")
    if not isinstance(data, dict) or (require_result and data.get("result") is None):
        refuse("JSON that is not a Qualtrics result envelope")
    try:
        envelope = Envelope.model_validate(data)
    except ValidationError:
        refuse("an envelope with a malformed `meta`")
    if envelope.meta.notice:
        # E.g. "Request proxied. For faster response times, use this host instead: ...";
        # some POSTs fail on proxied hosts (qualtrics-api.md §3), so say so loudly.
        logger.warning(
            "Qualtrics notice on %s %s: %s", method, path, sanitize(envelope.meta.notice)
        )
    return envelope


def parse_grant(path: str, answer: Answer) -> TokenGrant:
    """The token endpoint's answer; on any problem say what, but never echo the body."""

    def refuse(why: str) -> NoReturn:
        raise QualtricsProtocolError(
            f"The Qualtrics token endpoint (POST {path} -> {answer.status}) sent {why}",
            method="POST",
            path=path,
            status=answer.status,
        )

    if answer.truncated:
        refuse(f"a body over the {answer.limit}-byte limit")
    try:
        data = json.loads(answer.body)
    except (ValueError, RecursionError):
        refuse("a body that is not JSON")
    if not isinstance(data, dict):
        refuse("JSON that is not an object")
    access_token = data.get("access_token")
    if not isinstance(access_token, str) or not _HEADER_TOKEN.fullmatch(access_token):
        refuse("no usable access_token")
    token_type = data.get("token_type", "bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        refuse("a token_type other than Bearer")
    expires_in = data.get("expires_in", DEFAULT_TOKEN_LIFETIME)
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        refuse("an expires_in that is not a number")
    if not 0 < expires_in <= MAX_TOKEN_LIFETIME:
        refuse(f"an expires_in outside 0-{MAX_TOKEN_LIFETIME:g} s")
    return TokenGrant(access_token=access_token, expires_in=float(expires_in))


def _location(answer: Answer) -> str:
    """Where a redirect pointed, as scheme and host only (a full URL may carry anything)."""
    location = answer.headers.get("Location")
    if not location:
        return ""
    try:
        target = httpx.URL(location)
    except httpx.InvalidURL:
        return " to an invalid location"
    if not target.is_absolute_url:
        return " to another path on the same host"
    return f" to {target.scheme}://{target.raw_host.decode('ascii', 'replace')}"


def _error_details(body: bytes, redact: tuple[str, ...]) -> dict[str, str]:
    """requestId, errorCode, errorMessage, instanceId from a Qualtrics or OAuth error body."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    meta = data.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    error = meta.get("error")
    error = error if isinstance(error, dict) else {}
    found = {
        "request_id": meta.get("requestId"),
        "error_code": error.get("errorCode", data.get("error")),
        "error_message": error.get("errorMessage", data.get("error_description")),
        "instance_id": error.get("instanceId"),
    }
    return {
        name: sanitize(value, secrets=redact, limit=500)
        for name, value in found.items()
        if isinstance(value, str) and value
    }
