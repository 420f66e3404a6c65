"""Bad input at the webhook intake: headers, signatures, timestamps, bodies and sizes.

Each case names its one documented answer (README "Receiving interactions", design §7):
401 `invalid-signature` for any signature problem (missing, repeated or malformed headers, a
wrong signature, a timestamp outside ±5 minutes, a non-UTF-8 body); 400 for a body that is not
JSON (nesting deeper than the parser allows included); 422 for an invalid event; 413 above
1 MiB. After every refused case not one row of any table differs, and `/healthz` answers 200.
A few positive controls (marked `ok:`) prove each group refuses for the reason it names.
"""

import base64
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as label
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.interactions.schemas import MAX_LIST_ITEMS
from service.webhooks.schemas import event_adapter
from tests.badinput.corpus import (
    ACCEPTED,
    BODY_CAP,
    INVALID,
    MALFORMED,
    REJECTED,
    TOO_BIG,
    VALIDATION_FAILED,
    Expect,
    Failures,
    HeaderList,
    changed_tables,
    chunks,
    deep_object,
    json_bytes,
    nested,
    problem_mismatch,
    send,
    snapshot,
    unique,
    v1_signature,
)
from tests.conftest import Account
from tests.webhooks.helpers import interaction, organization_secret

MISSING = object()  # removes a key from an event or its data


@dataclass
class Ctx:
    """One organization's intake, and fresh signed requests for it."""

    organization_id: uuid.UUID
    secret: str
    now: int = field(default_factory=lambda: int(time.time()))

    @property
    def url(self) -> str:
        return f"/v1/webhooks/{self.organization_id}/interactions"

    def headers(
        self,
        body: bytes,
        *,
        message_id: str | bytes | None = None,
        timestamp: str | bytes | None = None,
        signed_timestamp: str | bytes | None = None,
        signature: str | bytes | None = None,
    ) -> dict[str, str | bytes]:
        """Correct headers for `body`, with any of them replaced; the signature covers the
        given id and `signed_timestamp` (by default the timestamp header's own text)."""
        message_id = message_id if message_id is not None else f"msg_{uuid.uuid4().hex}"
        timestamp = timestamp if timestamp is not None else str(self.now)
        signed = signed_timestamp if signed_timestamp is not None else timestamp
        if signature is None:
            signature = v1_signature(self.secret, message_id, signed, body)
        return {
            "webhook-id": message_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": signature,
            "content-type": "application/json",
        }

    def good_signature(self, body: bytes, message_id: str) -> str:
        return v1_signature(self.secret, message_id, str(self.now), body)


@dataclass(frozen=True)
class WebhookRequest:
    content: bytes | Callable[[], AsyncIterator[bytes]]
    headers: HeaderList
    url: str | None = None


@dataclass(frozen=True)
class Case:
    name: str
    expect: Expect
    build: Callable[[Ctx], WebhookRequest]


def valid_body() -> bytes:
    return event_body()


def event_body(data: Any = None, *, raw_data: str | None = None, **top: Any) -> bytes:
    """A complete event (a fresh interaction unless `data`), with top-level keys replaced or
    removed (MISSING); `raw_data` splices JSON text in as `data` (NaN, deep nesting)."""
    document: dict[str, Any] = {
        "type": "interaction.completed",
        "timestamp": datetime.now(UTC).isoformat(),
        "data": interaction() if data is None else data,
    }
    if data is MISSING:
        del document["data"]
    for key, value in top.items():
        if value is MISSING:
            document.pop(key, None)
        else:
            document[key] = value
    if raw_data is None:
        return json_bytes(document)
    document["data"] = "__RAW__"
    return json_bytes(document).replace(b'"__RAW__"', raw_data.encode())


def with_data(**changes: Any) -> bytes:
    """A fresh interaction with fields replaced or removed (MISSING)."""
    data = interaction()
    for key, value in changes.items():
        if value is MISSING:
            data.pop(key, None)
        else:
            data[key] = value
    return event_body(data)


def with_raw_field(key: str, raw: str) -> bytes:
    """A fresh interaction whose `key` holds the JSON text `raw` (NaN, Infinity, nesting)."""
    data = interaction()
    data[key] = "__RAW__"
    return event_body(data).replace(b'"__RAW__"', raw.encode())


def header_list(headers: dict[str, str | bytes]) -> HeaderList:
    return list(headers.items())


def signed(body: Callable[[], bytes], expect: Expect, name: str) -> Case:
    """A body case: the body correctly signed, so only the body can be wrong."""

    def build(ctx: Ctx) -> WebhookRequest:
        content = body()
        return WebhookRequest(content, header_list(ctx.headers(content)))

    return Case(name, expect, build)


def with_headers(name: str, expect: Expect, change: Callable[[Ctx, bytes], HeaderList]) -> Case:
    """A header case: a valid event, with headers built by `change`."""

    def build(ctx: Ctx) -> WebhookRequest:
        content = valid_body()
        return WebhookRequest(content, change(ctx, content))

    return Case(name, expect, build)


# -- headers -------------------------------------------------------------------------------

HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def _without(header: str) -> Callable[[Ctx, bytes], HeaderList]:
    def change(ctx: Ctx, body: bytes) -> HeaderList:
        return [(k, v) for k, v in ctx.headers(body).items() if k != header]

    return change


def _replaced(header: str, value: str | bytes) -> Callable[[Ctx, bytes], HeaderList]:
    def change(ctx: Ctx, body: bytes) -> HeaderList:
        headers = ctx.headers(body)
        if header == "webhook-id":
            # Signed with this very id, so only its form can be wrong.
            headers = ctx.headers(body, message_id=value)
        headers[header] = value
        return header_list(headers)

    return change


def _repeated(header: str, *, good_first: bool) -> Callable[[Ctx, bytes], HeaderList]:
    def change(ctx: Ctx, body: bytes) -> HeaderList:
        headers = ctx.headers(body)
        other = {
            "webhook-id": "msg_other",
            "webhook-timestamp": str(ctx.now - 3600),
            "webhook-signature": "v1," + base64.b64encode(b"\0" * 32).decode(),
        }[header]
        listed = header_list(headers)
        extra = (header, other)
        return [*listed, extra] if good_first else [extra, *listed]

    return change


def _latin1(header: str) -> Callable[[Ctx, bytes], HeaderList]:
    """A header with a non-ASCII (latin-1) byte; signed the only way it could verify (over the
    text the server decodes), so the refusal is about the byte itself."""

    def change(ctx: Ctx, body: bytes) -> HeaderList:
        if header == "webhook-id":
            raw = b"msg_caf\xe9"
            headers = ctx.headers(body, message_id=raw.decode("latin-1"))
        elif header == "webhook-timestamp":
            raw = str(ctx.now).encode() + b"\xb9"  # superscript one
            headers = ctx.headers(body, signed_timestamp=str(ctx.now))
        else:
            raw = ctx.good_signature(body, "msg_x").encode() + b"\xe9"
            headers = ctx.headers(body, message_id="msg_x")
        headers[header] = raw
        return header_list(headers)

    return change


def _huge(header: str) -> Callable[[Ctx, bytes], HeaderList]:
    def change(ctx: Ctx, body: bytes) -> HeaderList:
        big = 64 * 1024
        if header == "webhook-id":
            return header_list(ctx.headers(body, message_id="m" * big))
        if header == "webhook-timestamp":
            return header_list(ctx.headers(body, timestamp="0" * (big - 10) + str(ctx.now)))
        headers = ctx.headers(body, message_id="msg_big")
        wrong = "v1," + base64.b64encode(b"\1" * 32).decode()
        good = ctx.good_signature(body, "msg_big")
        headers[header] = " ".join([wrong] * (big // len(wrong)) + [good])
        return header_list(headers)

    return change


def _id_of(length: int) -> Callable[[Ctx, bytes], HeaderList]:
    def change(ctx: Ctx, body: bytes) -> HeaderList:
        return header_list(ctx.headers(body, message_id="m" * length))

    return change


HEADER_CASES: list[Case] = [
    with_headers("ok: correct headers", ACCEPTED, lambda ctx, body: header_list(ctx.headers(body))),
    with_headers(
        "ok: header names in another case",
        ACCEPTED,
        lambda ctx, body: [(k.title(), v) for k, v in ctx.headers(body).items()],
    ),
    with_headers("ok: webhook-id of 200 characters", ACCEPTED, _id_of(200)),
    *(with_headers(f"{h} missing", REJECTED, _without(h)) for h in HEADERS),
    *(with_headers(f"{h} empty", REJECTED, _replaced(h, "")) for h in HEADERS),
    *(with_headers(f"{h} only whitespace", REJECTED, _replaced(h, " \t ")) for h in HEADERS),
    *(
        with_headers(f"{h} repeated, good one first", REJECTED, _repeated(h, good_first=True))
        for h in HEADERS
    ),
    *(
        with_headers(f"{h} repeated, good one last", REJECTED, _repeated(h, good_first=False))
        for h in HEADERS
    ),
    *(with_headers(f"{h} of 64 KB", REJECTED, _huge(h)) for h in HEADERS),
    *(with_headers(f"{h} with a latin-1 byte", REJECTED, _latin1(h)) for h in HEADERS),
    with_headers("webhook-id of 201 characters (longer than stored)", REJECTED, _id_of(201)),
    with_headers("webhook-id of 4096 characters", REJECTED, _id_of(4096)),
    with_headers("webhook-id with NUL", REJECTED, _replaced("webhook-id", "msg\x00nul")),
    with_headers("webhook-id with a space", REJECTED, _replaced("webhook-id", "msg 1")),
    with_headers("webhook-id with a tab", REJECTED, _replaced("webhook-id", "msg\t1")),
    with_headers("webhook-id with DEL", REJECTED, _replaced("webhook-id", "msg\x7f")),
]


# -- signatures ----------------------------------------------------------------------------


def _signature(make: Callable[[Ctx, bytes, str], str]) -> Callable[[Ctx, bytes], HeaderList]:
    def change(ctx: Ctx, body: bytes) -> HeaderList:
        message_id = f"msg_{uuid.uuid4().hex}"
        value = make(ctx, body, message_id)
        return header_list(ctx.headers(body, message_id=message_id, signature=value))

    return change


def _good(ctx: Ctx, body: bytes, message_id: str) -> str:
    return ctx.good_signature(body, message_id)


def _good_b64(ctx: Ctx, body: bytes, message_id: str) -> str:
    return _good(ctx, body, message_id).removeprefix("v1,")


def _url_safe(ctx: Ctx, body: bytes) -> HeaderList:
    """The good signature in base64url: an id is drawn until it has a `+` or `/` to differ."""
    while True:
        message_id = f"msg_{uuid.uuid4().hex}"
        good = _good_b64(ctx, body, message_id)
        if "+" in good or "/" in good:
            value = "v1," + base64.urlsafe_b64encode(base64.b64decode(good)).decode()
            return header_list(ctx.headers(body, message_id=message_id, signature=value))


def _wrong(fill: int) -> str:
    return "v1," + base64.b64encode(bytes([fill]) * 32).decode()


SIGNATURE_CASES: list[Case] = [
    with_headers("ok: one good signature", ACCEPTED, _signature(_good)),
    with_headers(
        "ok: unknown version skipped, then a good v1",
        ACCEPTED,
        _signature(lambda c, b, m: "v1a," + _good_b64(c, b, m) + " " + _good(c, b, m)),
    ),
    with_headers(
        "ok: 60 wrong signatures then a good one (rotation)",
        ACCEPTED,
        _signature(lambda c, b, m: " ".join([_wrong(7)] * 60 + [_good(c, b, m)])),
    ),
    with_headers("v1", REJECTED, _signature(lambda c, b, m: "v1")),
    with_headers("v1,", REJECTED, _signature(lambda c, b, m: "v1,")),
    with_headers("v1,a,b", REJECTED, _signature(lambda c, b, m: "v1,a,b")),
    with_headers(",<good>", REJECTED, _signature(lambda c, b, m: "," + _good_b64(c, b, m))),
    with_headers("<good> without v1,", REJECTED, _signature(_good_b64)),
    with_headers("v2,<good>", REJECTED, _signature(lambda c, b, m: "v2," + _good_b64(c, b, m))),
    with_headers("v1a,<good>", REJECTED, _signature(lambda c, b, m: "v1a," + _good_b64(c, b, m))),
    with_headers("V1,<good>", REJECTED, _signature(lambda c, b, m: "V1," + _good_b64(c, b, m))),
    with_headers("v1;<good>", REJECTED, _signature(lambda c, b, m: "v1;" + _good_b64(c, b, m))),
    with_headers("v1, <good>", REJECTED, _signature(lambda c, b, m: "v1, " + _good_b64(c, b, m))),
    with_headers(
        "v1,<good> with junk appended",
        REJECTED,
        _signature(lambda c, b, m: _good(c, b, m) + "!!"),
    ),
    with_headers(
        "v1,<good> with junk inside",
        REJECTED,
        _signature(lambda c, b, m: _good(c, b, m)[:10] + "$" + _good(c, b, m)[10:]),
    ),
    with_headers(
        "v1,<good> without padding",
        REJECTED,
        _signature(lambda c, b, m: _good(c, b, m).rstrip("=")),
    ),
    with_headers("v1,<good> url-safe alphabet", REJECTED, _url_safe),
    with_headers("v1,<good> as hex", REJECTED, _signature(lambda c, b, m: "v1," + "ab" * 32)),
    with_headers("v1,@@@@", REJECTED, _signature(lambda c, b, m: "v1,@@@@")),
    with_headers(
        "v1,<truncated good>", REJECTED, _signature(lambda c, b, m: _good(c, b, m)[:-8] + "=")
    ),
    with_headers(
        "v1,<good for another body>",
        REJECTED,
        _signature(lambda c, b, m: c.good_signature(b + b" ", m)),
    ),
    with_headers(
        "v1,<good for another id>",
        REJECTED,
        _signature(lambda c, b, m: c.good_signature(b, m + "x")),
    ),
    with_headers(
        "v1,<signed by another secret>",
        REJECTED,
        _signature(lambda c, b, m: v1_signature("whsec_" + "QUJD" * 8, m, str(c.now), b)),
    ),
    with_headers(
        "a malformed entry before a good one",
        REJECTED,
        _signature(lambda c, b, m: "v1,a,b " + _good(c, b, m)),
    ),
    with_headers(
        "two spaces between signatures",
        REJECTED,
        _signature(lambda c, b, m: _wrong(3) + "  " + _good(c, b, m)),
    ),
    with_headers(
        "comma-separated signatures",
        REJECTED,
        _signature(lambda c, b, m: _wrong(3) + ", " + _good(c, b, m)),
    ),
    with_headers(
        "1000 space-separated wrong signatures",
        REJECTED,
        _signature(lambda c, b, m: " ".join([_wrong(9)] * 1000)),
    ),
    with_headers(
        "1000 wrong signatures and a good one (over 4 KB)",
        REJECTED,
        _signature(lambda c, b, m: " ".join([_wrong(9)] * 1000 + [_good(c, b, m)])),
    ),
]


# -- timestamps ----------------------------------------------------------------------------


def _timestamp(
    header: Callable[[int], str], signed_as: Callable[[int], str] | None = None
) -> Callable[[Ctx, bytes], HeaderList]:
    """The timestamp header's text; signed over that text, or over `signed_as` (the canonical
    integer the standardwebhooks library recomputes)."""

    def change(ctx: Ctx, body: bytes) -> HeaderList:
        text = header(ctx.now)
        signed_text = signed_as(ctx.now) if signed_as else text
        return header_list(ctx.headers(body, timestamp=text, signed_timestamp=signed_text))

    return change


def _canonical(now: int) -> str:
    return str(now)


def _fullwidth(ctx: Ctx, body: bytes) -> HeaderList:
    """Digits Python's float() reads (U+FF10...), sent as UTF-8 bytes; signed canonically."""
    wide = str(ctx.now).translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})
    headers = ctx.headers(body, signed_timestamp=str(ctx.now))
    headers["webhook-timestamp"] = wide.encode()
    return header_list(headers)


SIX_MINUTES = 6 * 60
TIMESTAMP_CASES: list[Case] = [
    with_headers("ok: now", ACCEPTED, _timestamp(_canonical)),
    with_headers("ok: 4 minutes old", ACCEPTED, _timestamp(lambda n: str(n - 240))),
    with_headers("ok: 4 minutes ahead", ACCEPTED, _timestamp(lambda n: str(n + 240))),
    # RFC 9110 §5.5: whitespace around a field value is not part of it (servers strip it).
    with_headers("ok: whitespace around it", ACCEPTED, _timestamp(lambda n: f" {n}\t", _canonical)),
    with_headers("6 minutes old", REJECTED, _timestamp(lambda n: str(n - SIX_MINUTES))),
    with_headers("6 minutes ahead", REJECTED, _timestamp(lambda n: str(n + SIX_MINUTES))),
    with_headers("-1", REJECTED, _timestamp(lambda n: "-1")),
    with_headers("0", REJECTED, _timestamp(lambda n: "0")),
    with_headers("1e20", REJECTED, _timestamp(lambda n: "1e20")),
    with_headers("nan", REJECTED, _timestamp(lambda n: "nan")),
    with_headers("NaN", REJECTED, _timestamp(lambda n: "NaN")),
    with_headers("inf", REJECTED, _timestamp(lambda n: "inf")),
    with_headers("-inf", REJECTED, _timestamp(lambda n: "-inf")),
    with_headers("99999999999999999999", REJECTED, _timestamp(lambda n: "9" * 20)),
    with_headers("1.5", REJECTED, _timestamp(lambda n: "1.5")),
    with_headers("milliseconds", REJECTED, _timestamp(lambda n: str(n * 1000))),
    with_headers("ISO 8601", REJECTED, _timestamp(lambda n: datetime.now(UTC).isoformat())),
    with_headers("hex", REJECTED, _timestamp(lambda n: hex(n))),
    with_headers(
        "digits with a space inside", REJECTED, _timestamp(lambda n: f"{n}"[:5] + " " + f"{n}"[5:])
    ),
    # Spellings of the right second that Python's float() accepts: a signature over the
    # canonical integer must not make them valid.
    with_headers("now as a decimal", REJECTED, _timestamp(lambda n: f"{n}.0", _canonical)),
    with_headers("now plus a fraction", REJECTED, _timestamp(lambda n: f"{n}.9", _canonical)),
    with_headers("now with +", REJECTED, _timestamp(lambda n: f"+{n}", _canonical)),
    with_headers("now with underscores", REJECTED, _timestamp(lambda n: f"{n:_}", _canonical)),
    with_headers("now in exponent form", REJECTED, _timestamp(lambda n: f"{n}e0", _canonical)),
    with_headers("now in full-width digits", REJECTED, lambda ctx, body: _fullwidth(ctx, body)),
]


# -- bodies (correctly signed) -------------------------------------------------------------


def _many(item: Any, count: int) -> list[Any]:
    return [item] * count


def _catalog(data: Any) -> bytes:
    return event_body(data, type="catalog.updated")


def _exactly_the_cap() -> bytes:
    empty = event_body(interaction(metadata={"transcript": ""}))
    filler = BODY_CAP - len(empty)
    body = event_body(interaction(metadata={"transcript": "x" * filler}))
    assert len(body) == BODY_CAP
    return body


def _latin1_event() -> bytes:
    document = json.loads(event_body(interaction(agent={"name": "José"})))
    return json.dumps(document, ensure_ascii=False).encode("latin-1")


BODY_CASES: list[Case] = [
    signed(valid_body, ACCEPTED, "ok: a valid event"),
    # Not UTF-8: the signed text cannot be decoded, so nothing verifies (README).
    signed(lambda: b"\xff", REJECTED, "non-UTF-8: one 0xff byte"),
    signed(lambda: b"\xff\xfe{}", REJECTED, "non-UTF-8: UTF-16 BOM"),
    signed(_latin1_event, REJECTED, "non-UTF-8: a latin-1 encoded event"),
    signed(
        lambda: json.dumps({"type": "interaction.completed"}).encode("utf-16"),
        REJECTED,
        "non-UTF-8: UTF-16 JSON",
    ),
    signed(lambda: valid_body()[:-1] + b"\xe2\x82}", REJECTED, "non-UTF-8: truncated sequence"),
    signed(lambda: b'{"a": "\xed\xa0\x80"}', REJECTED, "non-UTF-8: encoded surrogate"),
    # Not JSON.
    signed(lambda: b"", MALFORMED, "empty body"),
    signed(lambda: b"   ", MALFORMED, "whitespace only"),
    signed(lambda: b"{not json", MALFORMED, "invalid JSON"),
    signed(lambda: b"{", MALFORMED, "unterminated object"),
    signed(lambda: valid_body()[:-10], MALFORMED, "truncated event"),
    signed(lambda: valid_body() + b" x", MALFORMED, "trailing garbage"),
    signed(lambda: valid_body() + valid_body(), MALFORMED, "two events"),
    signed(lambda: b"{'type': 'interaction.completed'}", MALFORMED, "single quotes"),
    signed(lambda: b'{"type": "interaction.completed",}', MALFORMED, "trailing comma"),
    signed(lambda: b"// note\n{}", MALFORMED, "a comment"),
    signed(lambda: b"\xef\xbb\xbf" + valid_body(), MALFORMED, "UTF-8 byte order mark"),
    signed(lambda: b'{"a": "x\x01y"}', MALFORMED, "raw control character in a string"),
    signed(lambda: b'{"a": "\\ud800"}', MALFORMED, "lone surrogate escape"),
    signed(lambda: b'{"a": "\\x41"}', MALFORMED, "invalid escape"),
    signed(lambda: nested(10_000).encode(), MALFORMED, "10k nested arrays"),
    signed(lambda: deep_object(10_000).encode(), MALFORMED, "10k nested objects"),
    signed(lambda: event_body(raw_data=deep_object(10_000)), MALFORMED, "data nested 10k deep"),
    signed(
        lambda: with_raw_field("metadata", '{"k": ' + nested(10_000) + "}"),
        MALFORMED,
        "metadata value nested 10k deep",
    ),
    # JSON, but not an event.
    signed(lambda: b"null", INVALID, "null"),
    signed(lambda: b'"interaction.completed"', INVALID, "a JSON string"),
    signed(lambda: b"[]", INVALID, "an empty array"),
    signed(lambda: b"[" + valid_body() + b"]", INVALID, "an array holding an event"),
    signed(lambda: b"42", INVALID, "a number"),
    signed(lambda: b"true", INVALID, "true"),
    signed(lambda: b"{}", INVALID, "an empty object"),
    signed(lambda: event_body(type=MISSING), INVALID, "type missing"),
    signed(lambda: event_body(timestamp=MISSING), INVALID, "timestamp missing"),
    signed(lambda: event_body(data=MISSING), INVALID, "data missing"),
    signed(lambda: event_body(type="interaction.deleted"), INVALID, "type unknown"),
    signed(lambda: event_body(type="INTERACTION.COMPLETED"), INVALID, "type in upper case"),
    signed(lambda: event_body(type=1), INVALID, "type a number"),
    signed(lambda: event_body(type=None), INVALID, "type null"),
    signed(lambda: event_body(timestamp="2026-11-26T09:22:00"), INVALID, "timestamp naive"),
    signed(lambda: event_body(timestamp="yesterday"), INVALID, "timestamp garbage"),
    signed(lambda: event_body(timestamp=[]), INVALID, "timestamp a list"),
    signed(
        lambda: event_body(timestamp="9999-12-31T23:59:59-14:00"),
        INVALID,
        "timestamp beyond year 9999 in UTC",
    ),
    signed(
        lambda: event_body(timestamp="0001-01-01T00:00:00+14:00"),
        INVALID,
        "timestamp before year 1 in UTC",
    ),
    signed(lambda: event_body(raw_data="null"), INVALID, "data null"),
    signed(lambda: event_body(raw_data="[]"), INVALID, "data a list"),
    signed(lambda: event_body(raw_data='"call-1"'), INVALID, "data a string"),
    signed(lambda: event_body(raw_data="{}"), INVALID, "data empty"),
    # Each field of the interaction, wrong.
    signed(lambda: with_data(id=MISSING), INVALID, "id missing"),
    signed(lambda: with_data(channel=MISSING), INVALID, "channel missing"),
    signed(lambda: with_data(started_at=MISSING), INVALID, "started_at missing"),
    signed(lambda: with_data(id=12345), INVALID, "id a number"),
    signed(lambda: with_data(id=None), INVALID, "id null"),
    signed(lambda: with_data(id=""), INVALID, "id empty"),
    signed(lambda: with_data(id="   "), INVALID, "id blank"),
    signed(lambda: with_data(id=["call-1"]), INVALID, "id a list"),
    signed(lambda: with_data(id="c" * 201), INVALID, "id of 201 characters"),
    signed(lambda: with_data(id="c" * 10_000), INVALID, "id of 10k characters"),
    signed(lambda: with_data(id="call\x00-1"), INVALID, "id with NUL"),
    signed(lambda: with_data(channel="fax"), INVALID, "channel unknown"),
    signed(lambda: with_data(channel="CALL"), INVALID, "channel in upper case"),
    signed(lambda: with_data(channel=1), INVALID, "channel a number"),
    signed(lambda: with_data(direction="sideways"), INVALID, "direction unknown"),
    signed(lambda: with_data(started_at="2026-11-26T09:15:00"), INVALID, "started_at naive"),
    signed(lambda: with_data(started_at="soon"), INVALID, "started_at garbage"),
    signed(lambda: with_data(started_at="2026-13-45T00:00:00Z"), INVALID, "started_at no date"),
    signed(lambda: with_data(started_at=1e20), INVALID, "started_at 1e20"),
    signed(lambda: with_data(started_at=True), INVALID, "started_at true"),
    signed(
        lambda: with_data(started_at="0001-01-01T00:00:00+14:00", ended_at=None),
        INVALID,
        "started_at before year 1 in UTC",
    ),
    signed(
        lambda: with_data(started_at="9999-12-31T23:59:59Z", ended_at=None),
        INVALID,
        "started_at at the end of the calendar",
    ),
    signed(
        lambda: with_data(started_at="1969-12-31T23:59:59Z", ended_at=None),
        INVALID,
        "started_at before 1970",
    ),
    signed(lambda: with_data(ended_at="2026-11-26T09:00:00+01:00"), INVALID, "ended before start"),
    signed(lambda: with_data(ended_at="2026-11-26T09:21:30"), INVALID, "ended_at naive"),
    signed(
        lambda: with_data(ended_at="9999-12-31T23:59:59-14:00"),
        INVALID,
        "ended_at beyond year 9999 in UTC",
    ),
    signed(lambda: with_data(duration_seconds=-1), INVALID, "duration negative"),
    signed(lambda: with_data(duration_seconds="long"), INVALID, "duration text"),
    signed(lambda: with_data(duration_seconds=1e308), INVALID, "duration 1e308"),
    signed(lambda: with_data(duration_seconds=10 * 86400 + 1), INVALID, "duration over 10 days"),
    signed(lambda: with_raw_field("duration_seconds", "NaN"), INVALID, "duration NaN"),
    signed(lambda: with_raw_field("duration_seconds", "Infinity"), INVALID, "duration Infinity"),
    signed(lambda: with_raw_field("talk_time_seconds", "-Infinity"), INVALID, "talk -Infinity"),
    signed(lambda: with_data(talk_time_seconds=-0.5), INVALID, "talk time negative"),
    signed(lambda: with_data(language="ENG1"), INVALID, "language ENG1"),
    signed(lambda: with_data(language="en"), INVALID, "language two letters"),
    signed(lambda: with_data(language=123), INVALID, "language a number"),
    signed(lambda: with_data(language="e" * 10_000), INVALID, "language 10k characters"),
    signed(lambda: with_data(country="GB"), INVALID, "country two letters"),
    signed(lambda: with_data(country="G1R"), INVALID, "country with a digit"),
    signed(lambda: with_data(number_dialed="1" * 501), INVALID, "number_dialed too long"),
    signed(lambda: with_data(number_dialed={"n": 1}), INVALID, "number_dialed an object"),
    signed(lambda: with_data(agent="Sam"), INVALID, "agent a string"),
    signed(lambda: with_data(agent=[{"id": "a"}]), INVALID, "agent a list"),
    signed(lambda: with_data(agent={"name": "n" * 501}), INVALID, "agent name too long"),
    signed(lambda: with_data(agent={"email": 5}), INVALID, "agent email a number"),
    signed(lambda: with_data(agent={"name": "Sam\x00"}), INVALID, "agent name with NUL"),
    signed(lambda: with_data(customer={"phone": ["1"]}), INVALID, "customer phone a list"),
    signed(lambda: with_data(call_groups={"name": "B"}), INVALID, "call_groups an object"),
    signed(lambda: with_data(call_groups=[{"id": "t1"}]), INVALID, "call group without name"),
    signed(lambda: with_data(call_groups=[{"name": ""}]), INVALID, "call group name empty"),
    signed(
        lambda: with_data(call_groups=_many({"name": "B"}, MAX_LIST_ITEMS + 1)),
        INVALID,
        "call_groups over the limit",
    ),
    signed(lambda: with_data(categories="Frustration"), INVALID, "categories a string"),
    signed(lambda: with_data(categories=["Frustration"]), INVALID, "categories of strings"),
    signed(lambda: with_data(categories={"name": "F"}), INVALID, "categories an object"),
    signed(
        lambda: with_data(categories=[{"name": "F", "occurrences": -1}]),
        INVALID,
        "occurrences negative",
    ),
    signed(
        lambda: with_data(categories=[{"name": "F", "occurrences": 1.5}]),
        INVALID,
        "occurrences fractional",
    ),
    signed(
        lambda: with_data(categories=[{"name": "F", "groups": "Effort"}]),
        INVALID,
        "category groups a string",
    ),
    signed(
        lambda: with_data(categories=[{"name": "F", "groups": _many("G", 101)}]),
        INVALID,
        "category groups over the limit",
    ),
    signed(
        lambda: with_data(categories=_many({"name": "F"}, MAX_LIST_ITEMS + 1)),
        INVALID,
        "categories over the limit",
    ),
    signed(lambda: with_data(scores={"TEI": 4.6}), INVALID, "scores an object"),
    signed(lambda: with_data(scores=[{"name": "TEI", "value": "high"}]), INVALID, "score 'high'"),
    signed(lambda: with_data(scores=[{"name": "TEI", "value": None}]), INVALID, "score null"),
    signed(lambda: with_data(scores=[{"name": "TEI"}]), INVALID, "score without value"),
    signed(lambda: with_data(scores=[{"value": 1}]), INVALID, "score without name"),
    signed(
        lambda: with_raw_field("scores", '[{"name": "TEI", "value": NaN}]'), INVALID, "score NaN"
    ),
    signed(
        lambda: with_raw_field("scores", '[{"name": "TEI", "value": Infinity}]'),
        INVALID,
        "score Infinity",
    ),
    signed(
        lambda: with_data(scores=_many({"name": "TEI", "value": 1}, MAX_LIST_ITEMS + 1)),
        INVALID,
        "scores over the limit",
    ),
    signed(lambda: with_data(metadata="region"), INVALID, "metadata a string"),
    signed(lambda: with_data(metadata=[["region", "EMEA"]]), INVALID, "metadata a list"),
    signed(lambda: with_data(metadata={"a": {"b": 1}}), INVALID, "metadata nested object"),
    signed(lambda: with_data(metadata={"a": [1, 2]}), INVALID, "metadata list value"),
    signed(
        lambda: with_raw_field("metadata", '{"k": ' + nested(100) + "}"),
        INVALID,
        "metadata nested 100 deep",
    ),
    signed(lambda: with_raw_field("metadata", '{"k": NaN}'), INVALID, "metadata NaN"),
    signed(lambda: with_raw_field("metadata", '{"k": Infinity}'), INVALID, "metadata Infinity"),
    signed(lambda: with_raw_field("metadata", '{"k": -Infinity}'), INVALID, "metadata -Infinity"),
    signed(lambda: with_data(metadata={"k": "a\x00b"}), INVALID, "metadata value with NUL"),
    signed(lambda: with_data(metadata={"k\x00": "v"}), INVALID, "metadata key with NUL"),
    signed(lambda: with_data(metadata={"k" * 201: "v"}), INVALID, "metadata key too long"),
    signed(
        lambda: with_data(metadata={f"k{i}": i for i in range(MAX_LIST_ITEMS + 1)}),
        INVALID,
        "metadata over the limit",
    ),
    signed(lambda: with_data(url="https://x/" + "u" * 2000), INVALID, "url too long"),
    signed(lambda: with_data(url=5), INVALID, "url a number"),
    # Documented as accepted: unknown facts are ignored (the platform may add some), and no
    # limit but the body cap applies to a metadata value (transcripts).
    signed(lambda: event_body(extra_top_level="x"), ACCEPTED, "ok: unknown top-level field"),
    signed(lambda: with_data(future_fact={"x": 1}), ACCEPTED, "ok: unknown interaction field"),
    signed(lambda: with_data(agent={"id": "a", "team": "t"}), ACCEPTED, "ok: unknown agent field"),
    # The catalogue event refuses unknown keys (the catalogue's own rules).
    signed(lambda: _catalog({"categories": [{"name": "F"}]}), Expect(200), "ok: catalog"),
    signed(lambda: event_body(type="catalog.updated", raw_data="null"), INVALID, "catalog null"),
    signed(lambda: _catalog({"categoriez": []}), INVALID, "catalog with an unknown key"),
    signed(lambda: _catalog({"categories": "F"}), INVALID, "catalog categories a string"),
    signed(
        lambda: _catalog({"categories": [{"name": "F"}, {"name": "f"}]}),
        INVALID,
        "catalog duplicate names",
    ),
    signed(lambda: _catalog({"categories": [{"name": "F\x00"}]}), INVALID, "catalog NUL name"),
    signed(
        lambda: event_body(
            type="catalog.updated", raw_data='{"scores": [{"name": "T", "min": 0, "max": NaN}]}'
        ),
        INVALID,
        "catalog score NaN",
    ),
    # Last, so the snapshots after every other case stay small.
    signed(
        lambda: with_data(metadata={"transcript": "t" * 900_000}),
        ACCEPTED,
        "ok: metadata value of 900 KB",
    ),
    signed(_exactly_the_cap, ACCEPTED, "ok: exactly the 1 MiB cap"),
]


# -- sizes ---------------------------------------------------------------------------------


def _over_the_cap() -> bytes:
    return event_body(interaction(metadata={"transcript": "x" * BODY_CAP}))


def _declared(ctx: Ctx) -> WebhookRequest:
    body = _over_the_cap()
    return WebhookRequest(body, header_list(ctx.headers(body)))


def _chunked(ctx: Ctx) -> WebhookRequest:
    body = _over_the_cap()
    return WebhookRequest(lambda: chunks(body), header_list(ctx.headers(body)))


def _one_byte_over(ctx: Ctx) -> WebhookRequest:
    body = _exactly_the_cap() + b" "
    return WebhookRequest(body, header_list(ctx.headers(body)))


def _huge_chunked(ctx: Ctx) -> WebhookRequest:
    async def endless() -> AsyncIterator[bytes]:
        for _ in range(256):  # 16 MiB offered; the cap stops reading after 1 MiB
            yield b"x" * 65536

    return WebhookRequest(endless, header_list(ctx.headers(b"")))


SIZE_CASES: list[Case] = [
    Case("over the cap, Content-Length declared", TOO_BIG, _declared),
    Case("over the cap, chunked", TOO_BIG, _chunked),
    Case("one byte over the cap", TOO_BIG, _one_byte_over),
    Case("16 MiB chunked", TOO_BIG, _huge_chunked),
]


# -- paths ---------------------------------------------------------------------------------


def _path(path: str) -> Callable[[Ctx], WebhookRequest]:
    def build(ctx: Ctx) -> WebhookRequest:
        body = valid_body()
        return WebhookRequest(body, header_list(ctx.headers(body)), url=path)

    return build


PATH_CASES: list[Case] = [
    Case("unknown organization", REJECTED, _path(f"/v1/webhooks/{uuid.uuid4()}/interactions")),
    Case(
        "organization id not a UUID",
        INVALID,
        _path("/v1/webhooks/not-a-uuid/interactions"),
    ),
    Case(
        "organization id of 10k characters",
        INVALID,
        _path("/v1/webhooks/" + "a" * 10_000 + "/interactions"),
    ),
]

GROUPS: dict[str, list[Case]] = {
    "headers": HEADER_CASES,
    "signatures": SIGNATURE_CASES,
    "timestamps": TIMESTAMP_CASES,
    "bodies": BODY_CASES,
    "sizes": SIZE_CASES,
    "paths": PATH_CASES,
}
CORPUS_SIZE = sum(len(cases) for cases in GROUPS.values())


def test_case_names_are_unique() -> None:
    for name, cases in GROUPS.items():
        assert unique([case.name for case in cases]) == [], name


@pytest.mark.parametrize("group", list(GROUPS))
async def test_each_case_gets_its_documented_answer_and_stores_nothing(
    client: httpx.AsyncClient,
    admin: Account,
    sessionmaker: async_sessionmaker[AsyncSession],
    group: str,
) -> None:
    ctx = Ctx(admin.organization.id, await organization_secret(sessionmaker, admin.organization.id))
    failures = Failures()
    before = await snapshot(sessionmaker)
    for case in GROUPS[group]:
        ctx.now = int(time.time())
        request = case.build(ctx)
        content = request.content() if callable(request.content) else request.content
        response = await send(
            client, "POST", request.url or ctx.url, content=content, headers=request.headers
        )
        after = await snapshot(sessionmaker)
        changed = changed_tables(before, after)
        before = after
        if isinstance(response, str):
            failures.add(case.name, response)
            continue
        mismatch = problem_mismatch(response, case.expect)
        if mismatch:
            failures.add(case.name, mismatch)
        if case.expect.is_success and "webhook_receipts" not in changed:
            failures.add(case.name, "answered 2xx but stored no receipt")
        if not case.expect.is_success and changed:
            failures.add(case.name, f"changed {changed}")
        if not mismatch and case.expect.status == 422 and not response.json().get("errors"):
            failures.add(case.name, "a 422 without errors[]")
        health = await client.get("/healthz")
        if health.status_code != 200:
            failures.add(case.name, f"/healthz answered {health.status_code} afterwards")
    assert (await client.get("/readyz")).status_code == 200
    failures.check()


# -- property: arbitrary signed bodies -----------------------------------------------------

# Values that have broken intakes before: non-finite numbers, NUL, times at the ends of the
# calendar, huge numbers, blank and long text.
NASTY: list[Any] = [
    math.nan,
    math.inf,
    -math.inf,
    "a\x00b",
    "\x00",
    "",
    " ",
    "x" * 600,
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+14:00",
    "2026-11-26T09:15:00",
    2**64,
    -1,
    1e308,
]
leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(NASTY)
)
json_values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    "id",
    "channel",
    "direction",
    "started_at",
    "ended_at",
    "duration_seconds",
    "language",
    "country",
    "agent",
    "call_groups",
    "categories",
    "scores",
    "metadata",
    "url",
]
# Where a nasty value is stored when it passes: inside objects the intake keeps whole.
NESTED_SLOTS: list[tuple[str, str]] = [
    ("metadata", "region"),
    ("metadata", "x\x00"),
    ("agent", "name"),
    ("customer", "phone"),
]


@st.composite
def mutated_events(draw: st.DrawFn) -> bytes:
    """A valid event with one part replaced (by an arbitrary or a nasty value) or removed."""
    data = interaction(ended_at=None)
    document: dict[str, Any] = {
        "type": draw(st.sampled_from(["interaction.completed", "interaction.updated"])),
        "timestamp": datetime.now(UTC).isoformat(),
        "data": data,
    }
    how = draw(st.sampled_from(["remove", "replace", "nested"]))
    if how == "nested":
        parent, key = draw(st.sampled_from(NESTED_SLOTS))
        data[parent] = {**(data.get(parent) or {}), key: draw(leaves)}
        return json_bytes(document)
    where = draw(st.sampled_from(["type", "timestamp", "data", *FIELDS]))
    target = document if where in document else data
    if how == "remove":
        target.pop(where, None)
    else:
        target[where] = draw(json_values)
    return json_bytes(document)


bodies = (
    st.binary(max_size=300)
    | json_values.map(json_bytes)
    | mutated_events()
    | mutated_events()
    | st.builds(lambda: event_body(interaction(ended_at=None)))
)


def expected_outcome(body: bytes) -> set[int]:
    """What the intake must answer for a correctly signed `body`."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return {401}
    try:
        event_adapter.validate_json(body)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            return {400}
        return {422}
    return {200, 202}


@settings(
    max_examples=100,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies)
async def test_arbitrary_signed_bodies_never_5xx_and_store_only_valid_events(
    client: httpx.AsyncClient,
    admin: Account,
    sessionmaker: async_sessionmaker[AsyncSession],
    body: bytes,
) -> None:
    secret = await organization_secret(sessionmaker, admin.organization.id)
    ctx = Ctx(admin.organization.id, secret)
    before = await snapshot(sessionmaker)
    response = await send(
        client, "POST", ctx.url, content=body, headers=header_list(ctx.headers(body))
    )
    assert not isinstance(response, str), response
    after = await snapshot(sessionmaker)
    label(f"answered {response.status_code}")
    assert response.status_code in expected_outcome(body), (body[:200], response.text[:300])
    if response.status_code < 300:
        assert "webhook_receipts" in changed_tables(before, after)
    else:
        assert changed_tables(before, after) == [], body[:200]
        problem = response.json()
        assert problem["status"] == response.status_code
        if response.status_code == 422:
            assert problem["type"].endswith("/" + VALIDATION_FAILED)


def test_the_corpus_is_substantial() -> None:
    assert CORPUS_SIZE >= 150, CORPUS_SIZE
