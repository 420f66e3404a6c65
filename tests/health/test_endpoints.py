import httpx
import pytest
from fastapi import FastAPI

from service.config import Settings
from service.db import SchemaOutOfDateError, create_engine
from service.main import create_app
from tests.conftest import make_settings
from tests.helpers import assert_problem


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_reports_the_schema_revision(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["schema_revision"]


async def test_readyz_is_503_when_the_database_is_unreachable(settings: Settings) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await app.state.engine.dispose()
        app.state.engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert_problem(await client.get("/readyz"), 503)


async def test_api_refuses_to_start_on_an_old_schema(tmp_path: object) -> None:
    app: FastAPI = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path}/empty.db"))
    with pytest.raises(SchemaOutOfDateError, match="run `service migrate` first"):
        async with app.router.lifespan_context(app):
            pass  # pragma: no cover - startup fails before this
