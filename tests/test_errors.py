"""Every error is a problem+json answer; nothing a client sends causes a 5xx."""

import httpx
import pytest

from service.config import Settings
from service.main import create_app
from tests.conftest import Account, make_settings
from tests.helpers import assert_problem


async def test_unknown_route_is_a_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/nothing-here"), 404)


async def test_wrong_method_is_a_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.put("/healthz"), 405)


@pytest.mark.parametrize("chunked", [False, True])
async def test_oversized_body_answers_413(
    settings: Settings, admin: Account, chunked: bool
) -> None:
    app = create_app(make_settings(settings.database_url, max_body_bytes=2048))
    body = b'{"name": "' + b"x" * 4096 + b'"}'

    async def chunks():  # type: ignore[no-untyped-def]
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post(
                "/v1/integrations",
                content=chunks() if chunked else body,
                headers={**admin.headers, "Content-Type": "application/json"},
            )
            assert_problem(response, 413)
            listing = await client.get("/v1/integrations", headers=admin.headers)
            assert listing.json()["items"] == []


async def test_wrong_content_type_is_a_4xx(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.post(
        "/v1/integrations",
        content=b"name=x",
        headers={**admin.headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_no_response_contains_a_password_hash(
    client: httpx.AsyncClient, admin: Account, viewer: Account
) -> None:
    created = await client.post("/v1/integrations", json={"name": "x"}, headers=admin.headers)
    bodies = [
        created.text,
        (await client.get("/v1/me", headers=admin.headers)).text,
        (await client.get("/v1/me", headers=viewer.headers)).text,
        (await client.get("/v1/integrations", headers=admin.headers)).text,
        (await client.get("/v1/audit-log", headers=admin.headers)).text,
        (await client.get("/v1/catalog", headers=admin.headers)).text,
    ]
    for text in bodies:
        assert "$argon2" not in text
        assert admin.user.password_hash not in text
