"""Schemathesis over every operation of the OpenAPI document, as an admin who just signed in
(so the step-up routes are reachable).

Each operation is one test. Its cases are generated first, deterministically (Hypothesis
`derandomize`, no example database), in three schemathesis phases:

- *examples*: every example the document gives;
- *coverage*: boundary and invalid values derived from the schemas (positive and negative),
  an evenly spread sample of at most `MAX_COVERAGE_CASES`;
- *fuzzing*: `MAX_FUZZ_EXAMPLES` drawn cases, valid and invalid.

Then they are sent, in order, to the app in the test's own event loop (the `client` fixture:
every response is also searched for the canary secrets), against a configured integration
(steps 1-5 through the API, a trigger, a signed interaction and its delivery). Every other
valid case gets the real ids of that integration, trigger, delivery and organization instead of
random ones, so the handlers' code past the 404 is fuzzed too. Webhook intake cases alternate
between unsigned and signed with the organization's secret, and a set of raw garbage bodies is
sent as well. Qualtrics is the in-process fake, so steps 1-3 succeed or fail realistically.

Checks: no 5xx, a documented status code, a documented content type, a body matching the
documented schema, documented headers, a documented 4xx rejection of invalid cases, and 405 for
undocumented methods. Job payloads enqueued meanwhile are searched for the canary secrets.

Two deterministic complements: every text input (each string of the documented example body,
each query and path parameter) set in turn to hostile strings (NUL, which PostgreSQL refuses;
bidi and astral characters; SQL; a long value), and raw garbage bodies for the webhook intake,
unsigned and signed.

Why not `schema.parametrize()` or `case.call()`: schemathesis reaches an ASGI app through
Starlette's TestClient, in another thread and event loop, while the app's database connections
belong to the test's loop. So cases are generated the way its pytest plugin does it (`create_test`
from `schemathesis.generation.hypothesis.builder`, pinned with schemathesis 4.32.5), serialized by
schemathesis' own transport, sent with httpx in the test's loop, and checked with
`case.validate_response`.

The schema is the app's own (`app.openapi()`), which `tests/test_openapi.py` holds equal to the
committed `openapi/openapi.json`; `/openapi.json` itself is not served by default outside the
embedded SQLite setup. The fuzz runs on PostgreSQL only (the production database), to keep the
suite's runtime in bounds; the isolation matrix covers both backends.
"""

import json
import unittest
import uuid
from collections.abc import Iterator
from copy import deepcopy
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.case import Case
from schemathesis.generation.hypothesis.builder import (
    HypothesisTestConfig,
    HypothesisTestMode,
    create_test,
)
from schemathesis.schemas import APIOperation
from standardwebhooks.webhooks import Webhook

from service.main import create_app
from tests.conftest import Account, make_settings
from tests.security.conftest import JobRecorder, Seed

# Fuzzing examples per operation (Hypothesis `max_examples`).
MAX_FUZZ_EXAMPLES = 25
# The coverage phase derives hundreds of cases for the larger bodies; an even sample is kept.
MAX_COVERAGE_CASES = 25
WEBHOOK_PATH = "/v1/webhooks/{organization_id}/interactions"
BASE_URL = "http://testserver"

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    unsupported_method,
]

CONFIG = SchemathesisConfig.from_dict(
    {
        "generation": {
            "mode": "all",
            "max-examples": MAX_FUZZ_EXAMPLES,
            "deterministic": True,
            "database": "none",
            "unique-inputs": True,
        },
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": False},
        },
    }
)


def _document() -> dict[str, Any]:
    # Building the app opens no connection; its document does not depend on the settings.
    application = create_app(make_settings("sqlite+aiosqlite:///:memory:"))
    document: dict[str, Any] = application.openapi()
    return document


DOCUMENT = _document()
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)
OPERATIONS: dict[str, APIOperation] = {
    operation.label: operation
    for operation in (result.ok() for result in SCHEMA.get_all_operations())
}


@pytest.fixture(scope="session")
def database_url(postgres_url: str) -> str:
    """The fuzz runs on PostgreSQL only (see the module docstring)."""
    return postgres_url


def _run_phases(operation: APIOperation, modes: list[HypothesisTestMode]) -> list[Case]:
    collected: list[Case] = []

    def collect(case: Case) -> None:
        collected.append(case)

    project = SCHEMA.config
    test = create_test(
        operation=operation,
        test_func=collect,
        config=HypothesisTestConfig(
            settings=project.get_hypothesis_settings(operation=operation, phase="fuzzing"),
            modes=modes,
            project=project,
        ),
    )
    try:
        test()
    except unittest.SkipTest:
        # Hypothesis's answer to an examples-only run of an operation without examples.
        assert modes == [HypothesisTestMode.EXAMPLES]
    return collected


def generate_cases(operation: APIOperation) -> list[Case]:
    """Every case of the three phases, in a fixed order, with coverage sampled evenly."""
    by_phase: dict[str, list[Case]] = {"examples": [], "coverage": [], "fuzzing": []}
    for case in _run_phases(operation, list(HypothesisTestMode)):
        assert case.meta is not None
        by_phase[case.meta.phase.name.value].append(case)
    coverage = by_phase["coverage"]
    if len(coverage) > MAX_COVERAGE_CASES:
        step = len(coverage) / MAX_COVERAGE_CASES
        coverage = [coverage[int(index * step)] for index in range(MAX_COVERAGE_CASES)]
    return by_phase["examples"] + coverage + by_phase["fuzzing"]


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def with_real_ids(case: Case, seed: Seed) -> bool:
    """Give a valid case the seeded ids; answer whether anything was replaced."""
    assert case.meta is not None
    if case.meta.generation.mode.is_negative or not case.path_parameters:
        return False
    if not all(_is_uuid(value) for value in case.path_parameters.values()):
        return False
    case.path_parameters = {
        name: seed.path_values.get(name, value) for name, value in case.path_parameters.items()
    }
    return True


@dataclass
class Sent:
    request: httpx.Request
    kwargs: dict[str, Any]


def build_request(client: httpx.AsyncClient, case: Case, headers: dict[str, str]) -> Sent:
    """The exact request schemathesis would send (serialized by its own transport), as httpx."""
    kwargs = case.as_transport_kwargs(base_url=BASE_URL, headers=headers)
    prepared = requests.Request(
        method=kwargs["method"],
        url=kwargs["url"],
        headers=kwargs["headers"],
        params=kwargs.get("params"),
        cookies=kwargs.get("cookies"),
        data=kwargs.get("data"),
        json=kwargs.get("json"),
        files=kwargs.get("files"),
    ).prepare()
    body = prepared.body
    content = body.encode() if isinstance(body, str) else body
    request = client.build_request(
        str(prepared.method),
        str(prepared.url),
        headers=[
            (name.encode("latin-1"), _header_bytes(value))
            for name, value in prepared.headers.items()
        ],
        content=content,
    )
    return Sent(request=request, kwargs=kwargs)


def _header_bytes(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode()


def sign(request: httpx.Request, secret: str, number: int) -> None:
    """Sign the exact body bytes the way the Creovai platform does (Standard Webhooks)."""
    body = request.content
    message_id = f"msg_fuzz_{number}"
    moment = datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id=message_id, timestamp=moment, data=body.decode())
    request.headers["webhook-id"] = message_id
    request.headers["webhook-timestamp"] = str(int(moment.timestamp()))
    request.headers["webhook-signature"] = signature


async def send_and_validate(
    client: httpx.AsyncClient, case: Case, sent: Sent, failures: list[str]
) -> httpx.Response:
    response = await client.send(sent.request)
    try:
        case.validate_response(
            response,
            checks=CHECKS,
            headers=dict(sent.request.headers),
            transport_kwargs=sent.kwargs,
        )
    except FailureGroup as error:
        failures.append(f"{case.method} {case.formatted_path}: {error}")
    return response


@pytest.mark.parametrize("label", list(OPERATIONS))
async def test_operation_conforms_to_its_documentation(
    label: str, client: httpx.AsyncClient, admin: Account, jobs: JobRecorder, seed: Seed
) -> None:
    operation = OPERATIONS[label]
    cases = generate_cases(operation)
    assert cases, f"no cases generated for {label}"
    failures: list[str] = []
    statuses: set[int] = set()
    for number, case in enumerate(cases):
        real = number % 2 == 0 and with_real_ids(case, seed)
        sent = build_request(client, case, admin.headers)
        if operation.path == WEBHOOK_PATH and real and _utf8(sent.request.content):
            sign(sent.request, seed.webhook_secret, number)
        response = await send_and_validate(client, case, sent, failures)
        statuses.add(response.status_code)
    assert failures == [], f"{len(failures)} failures; the first ones:\n\n" + "\n\n".join(
        failures[:5]
    )
    # Some case got past routing and validation into the handler (real ids, a valid body).
    assert statuses - {404, 405, 422}, f"{label}: only {sorted(statuses)}"


def _utf8(body: bytes) -> bool:
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True


# Text that has broken services before: NUL (PostgreSQL refuses it in text and JSONB), a
# right-to-left override with an astral character, SQL, and a long value.
HOSTILE_STRINGS = ["nul\x00byte", "\u202e\U0001f600\u0336", "' OR '1'='1' --", "x" * 4096]


def documented_examples(operation: APIOperation) -> list[Case]:
    """The examples phase alone: the cases built from the document's examples."""
    return _run_phases(operation, [HypothesisTestMode.EXAMPLES])


Leaf = tuple[str | int, ...]


def string_leaves(value: Any, at: Leaf = ()) -> Iterator[Leaf]:
    if isinstance(value, str):
        yield at
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from string_leaves(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from string_leaves(item, (*at, index))


def replaced(value: Any, at: Leaf, new: str) -> Any:
    if not at:
        return new
    copy = deepcopy(value)
    target = copy
    for step in at[:-1]:
        target = target[step]
    target[at[-1]] = new
    return copy


def hostile_cases(operation: APIOperation, seed: Seed) -> Iterator[Case]:
    """Each text input of the operation in turn, set to each hostile string: every string in
    its first documented body, every query parameter, every path parameter."""
    real = {name: seed.path_values[name] for name in _path_parameters(operation.path)}
    for example in documented_examples(operation)[:1]:
        if isinstance(example.body, (dict, list)):
            for leaf in string_leaves(example.body):
                for text in HOSTILE_STRINGS:
                    yield operation.Case(
                        path_parameters=real,
                        body=replaced(example.body, leaf, text),
                        media_type=example.media_type,
                    )
    definition = DOCUMENT["paths"][operation.path][operation.method.lower()]
    for parameter in definition.get("parameters", []):
        if parameter["in"] in ("query", "path"):
            for text in HOSTILE_STRINGS:
                if parameter["in"] == "query":
                    yield operation.Case(path_parameters=real, query={parameter["name"]: text})
                else:
                    yield operation.Case(path_parameters={**real, parameter["name"]: text})


def _path_parameters(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


async def test_hostile_strings_in_every_text_input(
    client: httpx.AsyncClient, admin: Account, jobs: JobRecorder, seed: Seed
) -> None:
    failures: list[str] = []
    sent_count = 0
    for label, operation in OPERATIONS.items():
        for number, case in enumerate(hostile_cases(operation, seed)):
            sent = build_request(client, case, admin.headers)
            if operation.path == WEBHOOK_PATH:
                sign(sent.request, seed.webhook_secret, number)
            response = await send_and_validate(client, case, sent, failures)
            assert response.status_code < 500, (label, case.body, case.query, response.text)
            sent_count += 1
    assert sent_count >= 100
    assert failures == [], f"{len(failures)} failures; the first ones:\n\n" + "\n\n".join(
        failures[:5]
    )


GARBAGE_BODIES: list[tuple[str, bytes]] = [
    ("application/json", b""),
    ("application/json", b"{"),
    ("application/json", b"null"),
    ("application/json", b"[]"),
    ("application/json", b'{"type": "interaction.completed"}'),
    ("application/json", b'{"type": "nope", "data": {}}'),
    ("application/json", b"\xff\xfe\x00garbage"),
    ("text/plain", b"hello"),
    ("application/x-www-form-urlencoded", b"type=interaction.completed"),
    ("application/json", json.dumps({"type": "interaction.completed", "data": 1}).encode()),
    # Over the body limit (1 MiB by default): refused before it is read in full.
    ("application/json", b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'),
]


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
async def test_webhook_intake_rejects_garbage_bodies_with_a_documented_4xx(
    signed: bool, client: httpx.AsyncClient, seed: Seed
) -> None:
    operation = OPERATIONS[f"POST {WEBHOOK_PATH}"]
    failures: list[str] = []
    for number, (content_type, body) in enumerate(GARBAGE_BODIES):
        case = operation.Case(path_parameters={"organization_id": str(seed.organization_id)})
        request = client.build_request(
            "POST",
            f"/v1/webhooks/{seed.organization_id}/interactions",
            content=body,
            headers={"content-type": content_type},
        )
        if signed and _utf8(body):
            sign(request, seed.webhook_secret, number)
        sent = Sent(request=request, kwargs={})
        response = await send_and_validate(client, case, sent, failures)
        if len(body) > 1024 * 1024:
            expected = {413}
        elif signed and _utf8(body):
            expected = {400, 422}
        else:
            expected = {401}
        assert response.status_code in expected, (body[:100], response.status_code, response.text)
    assert failures == [], "\n\n".join(failures)
