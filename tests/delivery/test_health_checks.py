"""Scheduled health checks invalidate integrations whose survey Qualtrics refuses."""

import uuid

import httpx
from fastapi import FastAPI

from service.delivery.health_checks import check_enabled_integrations
from service.testing.fake_qualtrics import FakeQualtrics, Fault
from tests.conftest import Account
from tests.setup.helpers import enabled_integration


async def integration(client: httpx.AsyncClient, admin: Account, integration_id: str) -> dict:  # type: ignore[type-arg]
    body: dict = (  # type: ignore[type-arg]
        await client.get(f"/v1/integrations/{integration_id}", headers=admin.headers)
    ).json()
    return body


async def test_a_deleted_survey_invalidates_and_disables(
    app: FastAPI, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics
) -> None:
    integration_id = await enabled_integration(client, admin)
    assert await check_enabled_integrations(app.state.sessionmaker, app.state.qualtrics) == []

    project = (
        await client.get(f"/v1/integrations/{integration_id}/project", headers=admin.headers)
    ).json()
    qualtrics.delete_survey(project["survey_id"])
    invalidated = await check_enabled_integrations(app.state.sessionmaker, app.state.qualtrics)
    assert invalidated == [uuid.UUID(integration_id)]
    state = await integration(client, admin, integration_id)
    assert (state["health"], state["enabled"]) == ("invalid", False)
    assert project["survey_id"] in state["health_reason"]


async def test_transient_trouble_changes_nothing(
    app: FastAPI, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics
) -> None:
    integration_id = await enabled_integration(client, admin)
    qualtrics.inject_fault(Fault(kind="status", status=503, path_pattern=r".*", count=None))
    assert await check_enabled_integrations(app.state.sessionmaker, app.state.qualtrics) == []
    state = await integration(client, admin, integration_id)
    assert (state["health"], state["enabled"]) == ("ok", True)
