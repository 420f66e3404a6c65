"""`service demo`: the embedded service beside a fake Qualtrics, with one integration set up.

A newcomer sees a configured integration in Swagger without a Qualtrics account. The demo
starts the fake Qualtrics on its own port, points the service at it, creates a demo
organization and admin, and then walks the five setup steps through the public API, exactly
as an admin would. Its database is a fresh file each run, because the fake keeps its surveys
in memory: a survey id from an earlier run would point at nothing.
"""

import asyncio
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from service.config import Settings
from service.data_fields.schemas import DATA_FIELD_EXAMPLES
from service.db import create_engine, create_sessionmaker
from service.kit.crypto import SecretBox
from service.models import Role
from service.organizations.service import organization_service
from service.testing.fake_qualtrics import create_fake_qualtrics_app

DEMO_CLIENT_ID = "demo-client"
DEMO_SUBDOMAIN = "iad1"
DEMO_ADMIN_EMAIL = "admin@demo.example"
DEMO_CATALOG: dict[str, Any] = {
    "categories": [{"name": "Frustration"}, {"name": "Repeat contact"}, {"name": "Thanks"}],
    "category_groups": [{"name": "Effort", "members": ["Frustration", "Repeat contact"]}],
    "scores": [
        {
            "name": "TEI",
            "min": 0,
            "max": 10,
            "ranges": [
                {"label": "Low", "min": 0, "max": 3.3},
                {"label": "Average", "min": 3.3, "max": 6.6},
                {"label": "High", "min": 6.6, "max": 10},
            ],
        }
    ],
    "custom_metadata_fields": [{"name": "region"}],
    "call_group_types": [{"name": "Team"}],
}
DEMO_TRIGGER = {
    "name": "Frustrated callers",
    "criteria": {"channels": ["call"], "categories": {"any": ["Frustration"]}},
}


@dataclass(frozen=True)
class DemoLogin:
    organization_id: str
    password: str
    webhook_secret: str


def demo_database_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


async def create_demo_organization(settings: Settings) -> DemoLogin:
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            created = await organization_service.create(
                session,
                SecretBox(settings.fernet_keys),
                name="Demo organization",
                qualtrics_enabled=True,
            )
            password = secrets.token_urlsafe(12)
            await organization_service.create_user(
                session,
                organization_id=created.organization.id,
                email=DEMO_ADMIN_EMAIL,
                password=password,
                role=Role.ADMIN,
            )
    finally:
        await engine.dispose()
    return DemoLogin(str(created.organization.id), password, created.webhook_secret)


async def _call(http: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    response = await http.request(method, url, **kwargs)
    if response.status_code >= 400:
        raise RuntimeError(f"demo step {method} {url} failed: {response.text}")
    return response


async def walk_setup_steps(api_url: str, login: DemoLogin, client_secret: str) -> str:
    """Steps 1-5 through the public API; returns the integration id."""
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        token = await _call(
            http,
            "POST",
            "/v1/auth/token",
            data={"username": DEMO_ADMIN_EMAIL, "password": login.password},
        )
        http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        await _call(http, "PUT", "/v1/catalog", json=DEMO_CATALOG)
        created = await _call(http, "POST", "/v1/integrations", json={"name": "Demo integration"})
        base = f"/v1/integrations/{created.json()['id']}"
        await _call(
            http,
            "PUT",
            f"{base}/qualtrics-connection",
            json={
                "client_id": DEMO_CLIENT_ID,
                "client_secret": client_secret,
                "subdomain": DEMO_SUBDOMAIN,
            },
        )
        await _call(http, "POST", f"{base}/project", json={"name": "Creovai insights (demo)"})
        fields = [
            *DATA_FIELD_EXAMPLES,
            {"source": "score", "key": "TEI", "placement": "question", "format": "value"},
        ]
        await _call(http, "PUT", f"{base}/data-fields", json={"fields": fields})
        await _call(http, "POST", f"{base}/triggers", json=DEMO_TRIGGER)
        await _call(http, "POST", f"{base}/enable")
        return str(created.json()["id"])


async def serve_demo(
    settings: Settings, app: FastAPI, *, host: str, port: int, fake_port: int
) -> None:
    fake_app = create_fake_qualtrics_app()
    client_secret = secrets.token_urlsafe(24)
    fake_app.state.fake.register_account(
        DEMO_CLIENT_ID, client_secret, datacenter=DEMO_SUBDOMAIN, brand_id="demo-brand"
    )
    fake_server = uvicorn.Server(
        uvicorn.Config(fake_app, host="127.0.0.1", port=fake_port, log_level="warning")
    )
    api_server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info"))
    servers = asyncio.gather(fake_server.serve(), api_server.serve())
    while not (fake_server.started and api_server.started):
        if servers.done():
            await servers  # a server failed to start: raise its error
        await asyncio.sleep(0.05)

    login = await create_demo_organization(settings)
    api_url = f"http://{host}:{port}"
    integration_id = await walk_setup_steps(api_url, login, client_secret)
    print(
        "\n".join(
            [
                "",
                "Demo ready: one integration configured through steps 1-5 against a fake "
                "Qualtrics.",
                f"  Swagger UI:      {api_url}/docs  (Authorize with the login below)",
                f"  username:        {DEMO_ADMIN_EMAIL}",
                f"  password:        {login.password}",
                f"  organization id: {login.organization_id}",
                f"  webhook secret:  {login.webhook_secret}",
                f"  integration:     {api_url}/v1/integrations/{integration_id}",
                f"  fake Qualtrics:  http://127.0.0.1:{fake_port}/_fake/surveys",
                "Press Ctrl+C to stop.",
                "",
            ]
        ),
        flush=True,
    )
    await servers
