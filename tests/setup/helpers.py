"""Walking the setup steps through the public API, for tests that need a configured integration."""

import httpx

from tests.conftest import Account, connection_body


async def create_integration(client: httpx.AsyncClient, admin: Account, name: str = "NPS") -> str:
    response = await client.post("/v1/integrations", json={"name": name}, headers=admin.headers)
    assert response.status_code == 201, response.text
    integration_id: str = response.json()["id"]
    return integration_id


async def connect(client: httpx.AsyncClient, admin: Account, integration_id: str) -> None:
    response = await client.put(
        f"/v1/integrations/{integration_id}/qualtrics-connection",
        json=connection_body(),
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text


async def create_project(
    client: httpx.AsyncClient, admin: Account, integration_id: str, name: str = "Creovai insights"
) -> dict[str, object]:
    response = await client.post(
        f"/v1/integrations/{integration_id}/project", json={"name": name}, headers=admin.headers
    )
    assert response.status_code == 201, response.text
    project: dict[str, object] = response.json()
    return project
