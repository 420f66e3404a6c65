"""Shared machinery of the bad-input corpus: what "nothing changed" means, the problem check,
and a Standard Webhooks signer that signs exactly the bytes and header text it is given.

Every case of the corpus names the one answer it expects (status and problem `type`); a case
that answers anything else, raises, or changes a single row is reported with its name, so one
run lists every failing case at once instead of stopping at the first.
"""

import base64
import hashlib
import hmac
import json
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.errors import PROBLEM_JSON, PROBLEM_TYPE_BASE
from service.models import Base

MiB = 1024 * 1024
BODY_CAP = MiB  # Settings.max_body_bytes default, which the test app uses

# Problem types (the `type` URI is PROBLEM_TYPE_BASE + slug).
INVALID_SIGNATURE = "invalid-signature"
BAD_REQUEST = "bad-request"  # the webhook's malformed JSON; FastAPI's unparseable bodies
MALFORMED_JSON = "malformed-json"  # an admin body that is not JSON
VALIDATION_FAILED = "validation-failed"
TOO_LARGE = "request-entity-too-large"  # the body cap (service.kit.body_limit)
PRECONDITION_FAILED = "precondition-failed"

Snapshot = dict[str, list[str]]
HeaderList = list[tuple[str | bytes, str | bytes]]


@dataclass(frozen=True)
class Expect:
    """The one documented answer: a status and, for errors, the problem type's slug."""

    status: int
    slug: str | None = None

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300


REJECTED = Expect(401, INVALID_SIGNATURE)
MALFORMED = Expect(400, BAD_REQUEST)
INVALID = Expect(422, VALIDATION_FAILED)
TOO_BIG = Expect(413, TOO_LARGE)
ACCEPTED = Expect(202)


async def snapshot(sessionmaker: async_sessionmaker[AsyncSession]) -> Snapshot:
    """Every row of every table, as text: equal snapshots mean nothing was stored or changed."""
    state: Snapshot = {}
    async with sessionmaker() as session:
        for table in Base.metadata.sorted_tables:
            rows = (await session.execute(select(table))).all()
            state[table.name] = sorted(repr(tuple(row)) for row in rows)
    return state


def changed_tables(before: Snapshot, after: Snapshot) -> list[str]:
    return [name for name in before if before[name] != after.get(name)]


def problem_mismatch(response: httpx.Response, expect: Expect) -> str | None:
    """Why `response` is not the expected answer (None when it is)."""
    if response.status_code != expect.status:
        return f"status {response.status_code}, expected {expect.status}: {response.text[:300]}"
    if expect.is_success:
        return None
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith(PROBLEM_JSON):
        return f"content-type {content_type!r}, expected {PROBLEM_JSON}"
    try:
        body = response.json()
    except ValueError:
        return f"problem body is not JSON: {response.text[:200]}"
    if not isinstance(body, dict):
        return f"problem body is not an object: {response.text[:200]}"
    if body.get("status") != expect.status or not isinstance(body.get("title"), str):
        return f"problem without matching status/title: {body}"
    expected_type = PROBLEM_TYPE_BASE + (expect.slug or "")
    if body.get("type") != expected_type:
        return f"problem type {body.get('type')!r}, expected {expected_type!r}"
    errors = body.get("errors")
    if errors is not None and not (
        isinstance(errors, list)
        and all(isinstance(e, dict) and {"pointer", "detail"} <= e.keys() for e in errors)
    ):
        return f"malformed errors[]: {errors!r}"
    return None


@dataclass
class Failures:
    """Collects the failing cases of one test, to report them all together."""

    items: list[str] = field(default_factory=list)

    def add(self, case: str, problem: str) -> None:
        self.items.append(f"- {case}: {problem}")

    def check(self) -> None:
        assert not self.items, f"{len(self.items)} case(s) failed:\n" + "\n".join(self.items)


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    content: bytes | AsyncIterator[bytes] | None = None,
    headers: HeaderList | None = None,
) -> httpx.Response | str:
    """The response, or the text of the exception the app raised (a 500 in production)."""
    raw = [(_bytes(name), _bytes(value)) for name, value in headers or []]
    try:
        return await client.request(method, url, content=content, headers=raw)
    except Exception as exc:  # any escape is the finding (a 500 in production)
        return f"the app raised {type(exc).__name__}: {str(exc)[:300]}"


def _bytes(text: str | bytes) -> bytes:
    return text.encode() if isinstance(text, str) else text


async def chunks(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    """The body as a chunked upload: no Content-Length for the cap to read."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


# -- Standard Webhooks v1, signed by hand ---------------------------------------------------


def v1_signature(secret: str, message_id: str | bytes, timestamp: str | bytes, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256>` over `{id}.{timestamp}.{body}` exactly as given."""
    key = base64.b64decode(secret.removeprefix("whsec_") + "==")
    message_id = message_id.encode() if isinstance(message_id, str) else message_id
    timestamp = timestamp.encode() if isinstance(timestamp, str) else timestamp
    digest = hmac.new(key, message_id + b"." + timestamp + b"." + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def json_bytes(value: Any) -> bytes:
    """JSON text; NaN and Infinity come out as the bare literals Python's encoder writes."""
    return json.dumps(value, allow_nan=True).encode()


def nested(depth: int, leaf: Any = 1) -> str:
    """`depth` levels of arrays around `leaf`, as JSON text."""
    return "[" * depth + json.dumps(leaf) + "]" * depth


def deep_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def route_key(method: str, path: str) -> str:
    return f"{method.upper()} {path}"


def unique(names: Sequence[str]) -> list[str]:
    """The names appearing more than once (the corpus keeps case names unique)."""
    return sorted(name for name, count in Counter(names).items() if count > 1)
