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


CATALOG = {
    "categories": [
        {"name": "Frustration"},
        {"name": "Repeat contact"},
        {"name": "Transfer"},
        {"name": "Thanks"},
    ],
    "category_groups": [
        {"name": "Effort", "members": ["Frustration", "Repeat contact", "Transfer"]},
    ],
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
        },
        {"name": "AIS", "min": 0, "max": 10, "ranges": []},
    ],
    "custom_metadata_fields": [{"name": "region"}],
    "call_group_types": [{"name": "Team"}],
}

# One field of every format, in both placements where allowed.
SELECTION = [
    {"source": "interaction_detail", "key": "agent", "placement": "question", "format": "text"},
    {"source": "interaction_detail", "key": "date", "placement": "embedded_data", "format": "text"},
    {"source": "customer_detail", "key": "email", "placement": "embedded_data", "format": "text"},
    {"source": "category", "key": "Frustration", "placement": "question", "format": "boolean"},
    {"source": "category", "key": "Transfer", "placement": "embedded_data", "format": "numeric"},
    {"source": "category_group", "key": "Effort", "placement": "question", "format": "group"},
    {
        "source": "category_group",
        "key": "Effort",
        "placement": "embedded_data",
        "format": "multi_value_text_set",
    },
    {"source": "score", "key": "TEI", "placement": "question", "format": "value"},
    {"source": "score", "key": "TEI", "placement": "embedded_data", "format": "range"},
    {"source": "score", "key": "AIS", "placement": "question", "format": "range"},
    {"source": "custom_metadata", "key": "region", "placement": "embedded_data", "format": "text"},
    {"source": "call_group_type", "key": "Team", "placement": "embedded_data", "format": "text"},
]


async def put_catalog(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.put("/v1/catalog", json=CATALOG, headers=admin.headers)
    assert response.status_code == 200, response.text


async def save_fields(
    client: httpx.AsyncClient,
    admin: Account,
    integration_id: str,
    fields: list[dict[str, str]] | None = None,
) -> httpx.Response:
    return await client.put(
        f"/v1/integrations/{integration_id}/data-fields",
        json={"fields": SELECTION if fields is None else fields},
        headers=admin.headers,
    )


async def add_trigger(
    client: httpx.AsyncClient, admin: Account, integration_id: str, criteria: dict[str, object]
) -> None:
    response = await client.post(
        f"/v1/integrations/{integration_id}/triggers",
        json={"name": "Frustrated callers", "criteria": criteria},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text


async def enabled_integration(client: httpx.AsyncClient, admin: Account, name: str = "NPS") -> str:
    await put_catalog(client, admin)
    integration_id = await create_integration(client, admin, name)
    await connect(client, admin, integration_id)
    await create_project(client, admin, integration_id)
    assert (await save_fields(client, admin, integration_id)).status_code == 200
    await add_trigger(client, admin, integration_id, {"categories": {"any": ["Frustration"]}})
    enabled = await client.post(f"/v1/integrations/{integration_id}/enable", headers=admin.headers)
    assert enabled.status_code == 200, enabled.text
    return integration_id
