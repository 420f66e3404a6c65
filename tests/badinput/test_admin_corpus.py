"""Bad input at every admin write route: each answered with its documented 4xx problem, never a
5xx, and nothing changed (not one row of any table, the audit log included).

The routes come from the app's own OpenAPI document, so a new write route fails
`test_every_write_route_is_in_the_corpus` until it is given a valid body here (or listed as
bodyless); the generic cases are then derived from its request schema: not JSON, the wrong
content type, JSON that is not an object, each required field missing, each field of a wrong
type, NaN, huge and NUL-carrying strings, an unknown field (every request model forbids them),
nesting past the parser's limit and bodies over the 1 MiB cap. Hand-written cases add the
nested rules of each body. README "API conventions": malformed JSON 400, invalid fields 422,
too-large bodies 413, a stale `If-Match` 412.
"""

import copy
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.interactions.schemas import INTERACTION_EXAMPLE
from service.main import create_app
from service.models import Delivery
from service.testing.fake_qualtrics import FakeQualtrics
from tests.badinput.corpus import (
    BAD_REQUEST,
    BODY_CAP,
    INVALID,
    MALFORMED_JSON,
    PRECONDITION_FAILED,
    TOO_BIG,
    Expect,
    Failures,
    HeaderList,
    changed_tables,
    chunks,
    deep_object,
    json_bytes,
    nested,
    problem_mismatch,
    route_key,
    send,
    snapshot,
    unique,
)
from tests.conftest import Account, connection_body, make_settings
from tests.setup.helpers import CATALOG, SELECTION, enabled_integration
from tests.webhooks.helpers import event, interaction, organization_secret, post_event

# -- the routes, from the app's OpenAPI document -------------------------------------------

DOCUMENT: dict[str, Any] = create_app(
    make_settings("sqlite+aiosqlite://"), check_schema=False
).openapi()
SCHEMAS: dict[str, Any] = DOCUMENT["components"]["schemas"]
WRITE_METHODS = ("post", "put", "patch", "delete")
WRITE_ROUTES: dict[str, dict[str, Any]] = {
    route_key(method, path): operation
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
    if method in WRITE_METHODS
}

NOT_ADMIN = {
    route_key("post", "/v1/auth/token"): "the public sign-in form (tests/auth)",
    route_key("post", "/v1/webhooks/{organization_id}/interactions"): "test_webhook_corpus",
}

# A valid body for every admin route that takes one; each generic case changes one thing.
VALID_BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    route_key("put", "/v1/catalog"): lambda: copy.deepcopy(CATALOG),
    route_key("post", "/v1/integrations"): lambda: {"name": "Another integration"},
    route_key("patch", "/v1/integrations/{integration_id}"): lambda: {"name": "Renamed"},
    route_key("put", "/v1/integrations/{integration_id}/qualtrics-connection"): lambda: (
        connection_body()
    ),
    route_key("post", "/v1/integrations/{integration_id}/project"): lambda: {"name": "Survey 2"},
    route_key("put", "/v1/integrations/{integration_id}/data-fields"): lambda: {
        "fields": copy.deepcopy(SELECTION)
    },
    route_key("post", "/v1/integrations/{integration_id}/preview"): lambda: {
        "interaction": copy.deepcopy(INTERACTION_EXAMPLE)
    },
    route_key("post", "/v1/integrations/{integration_id}/triggers"): lambda: {
        "name": "Another trigger",
        "criteria": {"channels": ["call"]},
    },
    route_key("patch", "/v1/integrations/{integration_id}/triggers/{trigger_id}"): lambda: {
        "name": "Renamed trigger"
    },
    route_key("post", "/v1/integrations/{integration_id}/replay"): lambda: {
        "from": "2026-11-01T00:00:00Z",
        "to": "2026-11-08T00:00:00Z",
        "dry_run": False,
    },
    route_key("post", "/v1/integrations/{integration_id}/triggers/{trigger_id}/test"): lambda: {
        "limit": 10
    },
}

# Write routes without a body: only the body cap applies to what they are sent. In the order
# they are tried on one world: the routes that take it apart come last.
BODYLESS = (
    route_key("post", "/v1/deliveries/{delivery_id}/retry"),
    route_key("post", "/v1/integrations/{integration_id}/deliveries/discard-held"),
    route_key("post", "/v1/integrations/{integration_id}/triggers/{trigger_id}/disable"),
    route_key("post", "/v1/integrations/{integration_id}/triggers/{trigger_id}/enable"),
    route_key("post", "/v1/integrations/{integration_id}/disable"),
    route_key("post", "/v1/integrations/{integration_id}/enable"),
    route_key("post", "/v1/webhook-secrets/rotate"),
    route_key("delete", "/v1/integrations/{integration_id}/triggers/{trigger_id}"),
    route_key("delete", "/v1/integrations/{integration_id}/qualtrics-connection"),
    route_key("delete", "/v1/integrations/{integration_id}"),
)


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def request_schema(operation: dict[str, Any]) -> dict[str, Any]:
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    options = schema.get("anyOf", [schema])
    return resolve(next(option for option in options if option.get("type") != "null"))


def json_types(schema: dict[str, Any]) -> set[str]:
    """The JSON types a property accepts (null excluded)."""
    schema = resolve(schema)
    if "anyOf" in schema:
        return set().union(*(json_types(option) for option in schema["anyOf"])) - {"null"}
    if "allOf" in schema:
        return set().union(*(json_types(option) for option in schema["allOf"]))
    kind = schema.get("type")
    if kind is None:
        return {"object"} if "properties" in schema else {"string"}
    return {"number", "integer"} if kind in ("number", "integer") else {kind}


def wrong_value(schema: dict[str, Any]) -> Any:
    """A value of a JSON type the property does not accept (no lax coercion reaches it)."""
    accepted = json_types(schema)
    for kind, value in (
        ("object", {"unexpected": ["object"]}),
        ("array", ["unexpected"]),
        ("number", 12345),
    ):
        if kind not in accepted:
            return value
    return "unexpected text"


# -- cases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    expect: Expect
    content: bytes | Callable[[], Any]
    content_type: str | None = "application/json"
    if_match: str | None = None
    pointer: str | None = None  # a 422 must name this field (a prefix of one pointer)


def _json(value: Any) -> bytes:
    return json_bytes(value)


def _set(template: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(template)
    body[key] = value
    return body


def _raw_field(template: dict[str, Any], key: str, raw: str) -> bytes:
    return _json(_set(template, key, "__RAW__")).replace(b'"__RAW__"', raw.encode())


def _without(template: dict[str, Any], key: str) -> dict[str, Any]:
    body = copy.deepcopy(template)
    body.pop(key, None)
    return body


def generic_cases(key: str) -> list[Case]:
    """The cases derived from a route's request schema and valid body."""
    operation = WRITE_ROUTES[key]
    schema = request_schema(operation)
    template = VALID_BODIES[key]()
    body_required = bool(operation["requestBody"].get("required"))
    properties: dict[str, Any] = schema.get("properties", {})
    valid = _json(template)
    non_utf8 = b'{"name": "caf\xe9"}'
    cases = [
        Case("invalid JSON", Expect(400, MALFORMED_JSON), b"{not json"),
        Case("truncated JSON", Expect(400, MALFORMED_JSON), valid[:-1]),
        Case("trailing garbage", Expect(400, MALFORMED_JSON), valid + b" x"),
        Case("single quotes", Expect(400, MALFORMED_JSON), valid.replace(b'"', b"'")),
        Case("raw control character", Expect(400, MALFORMED_JSON), b'{"a": "x\x01"}'),
        Case("non-UTF-8 bytes", Expect(400, BAD_REQUEST), non_utf8),
        Case("nested 10k deep", Expect(400, BAD_REQUEST), nested(10_000).encode()),
        Case("objects nested 10k deep", Expect(400, BAD_REQUEST), deep_object(10_000).encode()),
        Case("wrong content type: text/plain", INVALID, valid, "text/plain", pointer="/body"),
        Case("wrong content type: form", INVALID, valid, "application/x-www-form-urlencoded"),
        Case("wrong content type: none", INVALID, valid, None, pointer="/body"),
        Case("JSON array", INVALID, b"[]", pointer="/body"),
        Case("JSON array of the body", INVALID, b"[" + valid + b"]", pointer="/body"),
        Case("JSON string", INVALID, b'"x"', pointer="/body"),
        Case("JSON number", INVALID, b"1", pointer="/body"),
        Case("JSON true", INVALID, b"true", pointer="/body"),
        Case("NaN as the body", INVALID, b"NaN", pointer="/body"),
        Case(
            "unknown field",
            INVALID,
            _json(_set(template, "unexpected", 1)),
            pointer="/body/unexpected",
        ),
        Case(
            "many unknown fields",
            INVALID,
            _json({**template, **{f"x{i}": i for i in range(2000)}}),
        ),
        Case(
            "nested 500 deep in an unknown field",
            INVALID,
            _raw_field(template, "unexpected", nested(500)),
        ),
    ]
    if body_required:
        cases += [
            Case("empty body", INVALID, b"", pointer="/body"),
            Case("JSON null", INVALID, b"null", pointer="/body"),
        ]
    for field in schema.get("required", []):
        cases.append(
            Case(
                f"{field} missing",
                INVALID,
                _json(_without(template, field)),
                pointer=f"/body/{field}",
            )
        )
    for field, prop in properties.items():
        where = f"/body/{field}"
        cases += [
            Case(
                f"{field} of a wrong type",
                INVALID,
                _json(_set(template, field, wrong_value(prop))),
                pointer=where,
            ),
            Case(f"{field} NaN", INVALID, _raw_field(template, field, "NaN"), pointer=where),
            Case(f"{field} Infinity", INVALID, _raw_field(template, field, "-Infinity")),
            Case(
                f"{field} nested 500 deep",
                INVALID,
                _raw_field(template, field, nested(500)),
                pointer=where,
            ),
        ]
        if "string" in json_types(prop):
            cases += [
                Case(
                    f"{field} of 200k characters",
                    INVALID,
                    _json(_set(template, field, "x" * 200_000)),
                    pointer=where,
                ),
                Case(
                    f"{field} with NUL",
                    INVALID,
                    _json(_set(template, field, "ab\x00cd")),
                    pointer=where,
                ),
                Case(
                    f"{field} with a lone surrogate",
                    INVALID,
                    _raw_field(template, field, '"a\\ud800"'),
                    pointer=where,
                ),
                Case(f"{field} empty", INVALID, _json(_set(template, field, ""))),
            ]
    oversized = _json({**template, "padding": "x" * BODY_CAP})
    cases += [
        Case("over the cap, declared", TOO_BIG, oversized),
        Case("over the cap, chunked", TOO_BIG, lambda: chunks(oversized)),
        Case("over the cap, not JSON", TOO_BIG, b"x" * (BODY_CAP + 1)),
    ]
    parameters = {parameter["name"]: parameter for parameter in operation.get("parameters", [])}
    if "if-match" in parameters:
        header = parameters["if-match"]["schema"]
        limit = min(
            (
                option["maxLength"]
                for option in header.get("anyOf", [header])
                if "maxLength" in option
            ),
            default=None,
        )
        for name, value in (
            ("stale If-Match", '"integration-999"'),
            ("garbage If-Match", "not an etag"),
            ("If-Match of 10 KB", "x" * 10_000),
        ):
            expect = INVALID if limit and len(value) > limit else Expect(412, PRECONDITION_FAILED)
            cases.append(Case(name, expect, valid, if_match=value))
    return cases


def _interaction(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(INTERACTION_EXAMPLE), **changes}


def _criteria(**criteria: Any) -> dict[str, Any]:
    return {"name": "Another trigger", "criteria": criteria}


def _field(**changes: Any) -> dict[str, Any]:
    return {"fields": [{**SELECTION[8], **changes}]}


def _catalog(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(CATALOG), **changes}


def _score(**changes: Any) -> dict[str, Any]:
    return _catalog(scores=[{"name": "TEI", "min": 0, "max": 10, **changes}])


def _nested(name: str, body: Callable[[], Any], *, raw: bool = False) -> Case:
    def content() -> bytes:
        value = body()
        return value if raw else _json(value)

    return Case(name, INVALID, content)


# The rules inside each body (all 422), beyond what the generic cases reach.
NESTED_CASES: dict[str, list[Case]] = {
    route_key("put", "/v1/catalog"): [
        _nested(
            "5001 categories", lambda: _catalog(categories=[{"name": f"c{i}"} for i in range(5001)])
        ),
        _nested("category name with NUL", lambda: _catalog(categories=[{"name": "a\x00"}])),
        _nested("category name of 201", lambda: _catalog(categories=[{"name": "c" * 201}])),
        _nested(
            "category description of 2001",
            lambda: _catalog(categories=[{"name": "c", "description": "d" * 2001}]),
        ),
        _nested(
            "category with an unknown key", lambda: _catalog(categories=[{"name": "c", "x": 1}])
        ),
        _nested("category a string", lambda: _catalog(categories=["Frustration"])),
        _nested(
            "duplicate category names", lambda: _catalog(categories=[{"name": "A"}, {"name": "a"}])
        ),
        _nested(
            "group of an unknown category",
            lambda: _catalog(category_groups=[{"name": "G", "members": ["Nope"]}]),
        ),
        _nested(
            "group without members",
            lambda: _catalog(category_groups=[{"name": "G", "members": []}]),
        ),
        _nested(
            "score max NaN",
            lambda: _raw_field(_score(), "scores", '[{"name": "T", "min": 0, "max": NaN}]'),
            raw=True,
        ),
        _nested("score min as text", lambda: _score(min="0")),
        _nested("score min above max", lambda: _score(min=10, max=0)),
        _nested("score bound 1e300", lambda: _score(max=1e300)),
        _nested(
            "score ranges unsorted",
            lambda: _score(
                ranges=[{"label": "B", "min": 5, "max": 10}, {"label": "A", "min": 0, "max": 5}]
            ),
        ),
        _nested(
            "score ranges with a gap",
            lambda: _score(
                ranges=[{"label": "A", "min": 0, "max": 4}, {"label": "B", "min": 5, "max": 10}]
            ),
        ),
    ],
    route_key("post", "/v1/integrations"): [
        _nested("name blank", lambda: {"name": "   "}),
        _nested("name with a newline", lambda: {"name": "a\nb"}),
        _nested("name a line separator", lambda: {"name": "\u2028"}),
    ],
    route_key("patch", "/v1/integrations/{integration_id}"): [
        _nested("name blank", lambda: {"name": "  "}),
        _nested("name with a tab", lambda: {"name": "a\tb"}),
    ],
    route_key("put", "/v1/integrations/{integration_id}/qualtrics-connection"): [
        _nested("subdomain with a dot", lambda: connection_body(subdomain="acme.iad1")),
        _nested("subdomain a URL", lambda: connection_body(subdomain="http://evil.example")),
        _nested("subdomain with @", lambda: connection_body(subdomain="iad1@evil")),
        _nested("subdomain punycode", lambda: connection_body(subdomain="xn--80ak6aa92e")),
        _nested("subdomain with a space", lambda: connection_body(subdomain="ia d1")),
        _nested("client_id with a colon", lambda: connection_body(client_id="a:b")),
        _nested("client_secret of 501", lambda: connection_body(client_secret="s" * 501)),
        _nested("client_secret with a newline", lambda: connection_body(client_secret="a\nb")),
    ],
    route_key("post", "/v1/integrations/{integration_id}/project"): [
        _nested("name with a newline", lambda: {"name": "a\nb"}),
        _nested("name of 201", lambda: {"name": "n" * 201}),
    ],
    route_key("put", "/v1/integrations/{integration_id}/data-fields"): [
        _nested("no fields", lambda: {"fields": []}),
        _nested("101 fields", lambda: {"fields": [SELECTION[0]] * 101}),
        _nested("field a string", lambda: {"fields": ["score TEI"]}),
        _nested("field source unknown", lambda: _field(source="transcript")),
        _nested("field placement unknown", lambda: _field(placement="header")),
        _nested("field format unknown", lambda: _field(format="emoji")),
        _nested("field format not for its source", lambda: _field(format="boolean")),
        _nested("field key not in the catalogue", lambda: _field(key="NPS")),
        _nested("field key with NUL", lambda: _field(key="T\x00EI")),
        _nested("field label with NUL", lambda: _field(label="a\x00")),
        _nested("field label of 100k", lambda: _field(label="l" * 100_000)),
        _nested("field with an unknown key", lambda: _field(color="red")),
    ],
    route_key("post", "/v1/integrations/{integration_id}/preview"): [
        _nested("interaction null", lambda: {"interaction": None}),
        _nested(
            "interaction without id",
            lambda: {"interaction": {k: v for k, v in INTERACTION_EXAMPLE.items() if k != "id"}},
        ),
        _nested("interaction id with NUL", lambda: {"interaction": _interaction(id="a\x00")}),
        _nested(
            "interaction metadata NaN",
            lambda: _raw_field(
                {"interaction": "__X__"},
                "interaction",
                json.dumps(_interaction()).replace('"EMEA"', "NaN"),
            ),
            raw=True,
        ),
        _nested(
            "interaction metadata nested",
            lambda: {"interaction": _interaction(metadata={"a": {"b": 1}})},
        ),
        _nested(
            "interaction started before year 1",
            lambda: {
                "interaction": _interaction(started_at="0001-01-01T00:00:00+14:00", ended_at=None)
            },
        ),
        _nested(
            "interaction score 'high'",
            lambda: {"interaction": _interaction(scores=[{"name": "TEI", "value": "high"}])},
        ),
        _nested("no fields", lambda: {"interaction": _interaction(), "fields": []}),
    ],
    route_key("post", "/v1/integrations/{integration_id}/triggers"): [
        _nested("criteria a list", lambda: {"name": "t", "criteria": [{"channels": ["call"]}]}),
        _nested("criteria with an unknown key", lambda: _criteria(colour="red")),
        _nested("channel unknown", lambda: _criteria(channels=["fax"])),
        _nested("agent with NUL", lambda: _criteria(agents=["a\x00"])),
        _nested("customer with NUL", lambda: _criteria(customers=["c\x00"])),
        _nested("number dialed with NUL", lambda: _criteria(numbers_dialed=["1\x00"])),
        _nested("metadata value with NUL", lambda: _criteria(metadata={"region": ["E\x00"]})),
        _nested("metadata value an object", lambda: _criteria(metadata={"region": [{"a": 1}]})),
        _nested("metadata values not a list", lambda: _criteria(metadata={"region": "EMEA"})),
        _nested("1001 agents", lambda: _criteria(agents=[f"a{i}" for i in range(1001)])),
        _nested("agent of 501", lambda: _criteria(agents=["a" * 501])),
        _nested("day of week 8", lambda: _criteria(days_of_week=[8])),
        _nested("day of week as text", lambda: _criteria(days_of_week=["1"])),
        _nested("timezone unknown", lambda: _criteria(timezone="Mars/Olympus_Mons")),
        _nested("timezone with NUL", lambda: _criteria(timezone="UTC\x00")),
        _nested("date_from not a date", lambda: _criteria(date_from="2026-02-30")),
        _nested("date_from a Unix time", lambda: _criteria(date_from=1_700_000_000)),
        _nested(
            "date_to before date_from",
            lambda: _criteria(date_from="2026-02-02", date_to="2026-02-01"),
        ),
        _nested(
            "time_of_day 25:00", lambda: _criteria(time_of_day={"from": "25:00", "to": "26:00"})
        ),
        _nested("sample_rate 1.5", lambda: _criteria(sample_rate=1.5)),
        _nested("sample_rate as text", lambda: _criteria(sample_rate="0.5")),
        _nested("duration min above max", lambda: _criteria(duration_seconds={"min": 5, "max": 1})),
        _nested(
            "score bound NaN",
            lambda: _raw_field(_criteria(), "criteria", '{"scores": {"TEI": {"min": NaN}}}'),
            raw=True,
        ),
        _nested("category not in the catalogue", lambda: _criteria(categories={"any": ["Nope"]})),
        _nested("country of two letters", lambda: _criteria(countries=["GB"])),
    ],
    route_key("patch", "/v1/integrations/{integration_id}/triggers/{trigger_id}"): [
        _nested("name null", lambda: {"name": None}),
        _nested("criteria null", lambda: {"criteria": None}),
        _nested("position negative", lambda: {"position": -1}),
        _nested("position as text", lambda: {"position": "1"}),
        _nested("position fractional", lambda: {"position": 1.5}),
        _nested("agent with NUL", lambda: {"criteria": {"agents": ["a\x00"]}}),
    ],
    route_key("post", "/v1/integrations/{integration_id}/replay"): [
        _nested(
            "to before from", lambda: {"from": "2026-11-08T00:00:00Z", "to": "2026-11-01T00:00:00Z"}
        ),
        _nested(
            "window of 32 days",
            lambda: {"from": "2026-10-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"},
        ),
        _nested(
            "from naive", lambda: {"from": "2026-11-01T00:00:00", "to": "2026-11-02T00:00:00Z"}
        ),
        _nested(
            "from before year 1 in UTC",
            lambda: {"from": "0001-01-01T00:00:00+14:00", "to": "0001-01-02T00:00:00Z"},
        ),
        _nested(
            "to beyond year 9999 in UTC",
            lambda: {"from": "9999-12-31T00:00:00-14:00", "to": "9999-12-31T23:00:00-14:00"},
        ),
        _nested("from a Unix time 1e20", lambda: {"from": 1e20, "to": "2026-11-02T00:00:00Z"}),
        _nested(
            "dry_run 2",
            lambda: {"from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z", "dry_run": 2},
        ),
    ],
    route_key("post", "/v1/integrations/{integration_id}/triggers/{trigger_id}/test"): [
        _nested("limit 0", lambda: {"limit": 0}),
        _nested("limit 1e9", lambda: {"limit": 1_000_000_000}),
        _nested("limit fractional", lambda: {"limit": 2.5}),
    ],
}


def bodyless_cases() -> list[Case]:
    return [
        Case("over the cap, declared", TOO_BIG, b"x" * (BODY_CAP + 1)),
        Case("JSON over the cap, declared", TOO_BIG, json_bytes({"padding": "x" * BODY_CAP})),
    ]


# Bodies sent to routes that define none: never read, so never a 5xx nor a 413 (a chunked
# body is only counted while it is read), and the route answers as it would without one.
IGNORED_BODIES: list[tuple[str, bytes | Callable[[], Any]]] = [
    ("invalid JSON", b"{not json"),
    ("JSON null", b"null"),
    ("nested 10k deep", nested(10_000).encode()),
    ("non-UTF-8", b"\xff\xfe"),
    ("chunked, over the cap", lambda: chunks(b"x" * (BODY_CAP + 1))),
]

# Cases whose documented answer is not the generic one.
OVERRIDES: dict[tuple[str, str], Expect] = {
    # The preview stores nothing; its trigger name is only echoed back.
    (route_key("post", "/v1/integrations/{integration_id}/preview"), "trigger_name with NUL"): (
        Expect(200)
    ),
}


# -- the world each route is tried against -------------------------------------------------


@dataclass
class World:
    """A fully set-up, enabled integration with a trigger and one pending delivery."""

    ids: dict[str, str]

    def url(self, path: str) -> str:
        try:
            return path.format(**self.ids)
        except KeyError as missing:  # a new route: say which id it needs
            raise AssertionError(f"no test object for path parameter {missing} of {path}") from None


@pytest.fixture
async def world(
    client: httpx.AsyncClient,
    admin: Account,
    qualtrics: FakeQualtrics,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> World:
    integration_id = await enabled_integration(client, admin)
    triggers = await client.get(
        f"/v1/integrations/{integration_id}/triggers", headers=admin.headers
    )
    secret = await organization_secret(sessionmaker, admin.organization.id)
    posted = await post_event(client, admin.organization.id, secret, event(interaction()))
    assert posted.status_code == 202, posted.text
    async with sessionmaker() as session:
        delivery = (await session.scalars(select(Delivery))).one()
    return World(
        {
            "integration_id": integration_id,
            "trigger_id": triggers.json()["items"][0]["id"],
            "delivery_id": str(delivery.id),
        }
    )


async def run_cases(
    client: httpx.AsyncClient,
    admin: Account,
    sessionmaker: async_sessionmaker[AsyncSession],
    method: str,
    path: str,
    world: World,
    cases: list[Case],
) -> Failures:
    url = world.url(path)
    failures = Failures()
    documented = {int(status) for status in WRITE_ROUTES[route_key(method, path)]["responses"]}
    before = await snapshot(sessionmaker)
    for case in cases:
        headers: HeaderList = list(admin.headers.items())
        if case.content_type:
            headers.append(("content-type", case.content_type))
        if case.if_match:
            headers.append(("if-match", case.if_match))
        content = case.content() if callable(case.content) else case.content
        response = await send(client, method, url, content=content, headers=headers)
        after = await snapshot(sessionmaker)
        if isinstance(response, str):
            failures.add(case.name, response)
            before = after
            continue
        mismatch = problem_mismatch(response, case.expect)
        if response.status_code not in documented:
            failures.add(case.name, f"{response.status_code} is not in the route's OpenAPI")
        if mismatch:
            failures.add(case.name, mismatch)
        elif case.expect.status == 422:
            pointers = [error["pointer"] for error in response.json().get("errors") or []]
            if not pointers:
                failures.add(case.name, "a 422 without errors[]")
            elif case.pointer and not any(p.startswith(case.pointer) for p in pointers):
                failures.add(case.name, f"errors at {pointers}, expected {case.pointer}")
        changed = changed_tables(before, after)
        if changed:
            failures.add(case.name, f"changed {changed}")
        health = await client.get("/healthz")
        if health.status_code != 200:
            failures.add(case.name, f"/healthz answered {health.status_code} afterwards")
        before = after
    return failures


BODY_ROUTES = sorted(VALID_BODIES)


def test_every_write_route_is_in_the_corpus() -> None:
    known = set(VALID_BODIES) | set(BODYLESS) | set(NOT_ADMIN)
    assert len(set(BODYLESS)) == len(BODYLESS)
    assert sorted(set(WRITE_ROUTES) - known) == [], "new write routes: add them to the corpus"
    assert sorted(known - set(WRITE_ROUTES)) == [], "routes that no longer exist"
    with_body = {key for key, operation in WRITE_ROUTES.items() if "requestBody" in operation}
    assert with_body - set(NOT_ADMIN) == set(VALID_BODIES)
    for key in BODY_ROUTES:
        names = [case.name for case in generic_cases(key) + NESTED_CASES.get(key, [])]
        assert unique(names) == [], key


def test_every_override_names_a_case() -> None:
    for key, name in OVERRIDES:
        assert name in [case.name for case in generic_cases(key) + NESTED_CASES.get(key, [])]


def test_every_request_model_forbids_unknown_fields() -> None:
    for key in BODY_ROUTES:
        assert request_schema(WRITE_ROUTES[key]).get("additionalProperties") is False, key


def test_the_corpus_is_substantial() -> None:
    total = sum(len(generic_cases(key)) + len(NESTED_CASES.get(key, [])) for key in BODY_ROUTES)
    total += len(BODYLESS) * len(bodyless_cases())
    assert total >= 500, total


@pytest.mark.parametrize("key", BODY_ROUTES)
async def test_bad_bodies_get_their_documented_problem_and_change_nothing(
    client: httpx.AsyncClient,
    admin: Account,
    sessionmaker: async_sessionmaker[AsyncSession],
    world: World,
    key: str,
) -> None:
    method, path = key.split(" ", 1)
    url = world.url(path)
    cases = [
        dataclasses.replace(case, expect=OVERRIDES.get((key, case.name), case.expect))
        for case in generic_cases(key) + NESTED_CASES.get(key, [])
    ]
    failures = await run_cases(client, admin, sessionmaker, method, path, world, cases)
    # The valid body itself is acceptable: every refusal above was about what each case broke.
    control = await client.request(method, url, json=VALID_BODIES[key](), headers=admin.headers)
    if control.status_code in (400, 413, 422) or control.status_code >= 500:
        failures.add("control: the valid body", f"answered {control.status_code}: {control.text}")
    assert (await client.get("/readyz")).status_code == 200
    failures.check()


async def test_bodyless_routes_refuse_oversized_bodies_and_ignore_others(
    client: httpx.AsyncClient,
    admin: Account,
    sessionmaker: async_sessionmaker[AsyncSession],
    world: World,
) -> None:
    failures = Failures()
    for key in BODYLESS:
        method, path = key.split(" ", 1)
        refused = await run_cases(
            client, admin, sessionmaker, method, path, world, bodyless_cases()
        )
        failures.items += [f"{item} ({key})" for item in refused.items]
    # Only now may the routes act: each answers a documented status, whatever it is sent.
    for key in BODYLESS:
        method, path = key.split(" ", 1)
        documented = {int(status) for status in WRITE_ROUTES[key]["responses"]}
        for name, body in IGNORED_BODIES:
            response = await send(
                client,
                method,
                world.url(path),
                content=body() if callable(body) else body,
                headers=[*admin.headers.items(), ("content-type", "application/json")],
            )
            if isinstance(response, str):
                failures.add(f"{key}: ignored body {name}", response)
            elif response.status_code not in documented:
                failures.add(f"{key}: ignored body {name}", f"undocumented {response.status_code}")
    assert (await client.get("/readyz")).status_code == 200
    failures.check()
