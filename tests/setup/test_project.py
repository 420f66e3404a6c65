"""Step 2: the survey is created, activated and published in the fake Qualtrics."""

from datetime import timedelta

import httpx

from service.models.base import utc_now
from service.testing.fake_qualtrics import FakeQualtrics, Fault
from tests.conftest import Account, AccountFactory
from tests.helpers import assert_problem
from tests.setup.helpers import connect, create_integration, create_project


def url(integration_id: str) -> str:
    return f"/v1/integrations/{integration_id}/project"


class TestCreateProject:
    async def test_creates_an_active_published_survey_with_the_reserved_fields(
        self, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics
    ) -> None:
        integration_id = await create_integration(client, admin)
        await connect(client, admin, integration_id)
        project = await create_project(client, admin, integration_id, "Voice of the customer")

        survey_id = str(project["survey_id"])
        survey = qualtrics.surveys[survey_id]
        assert survey.name == "Voice of the customer"
        assert survey.is_active
        assert project["published_version_number"] == 1
        declared = {
            item["Field"]: item["VariableType"] for item in qualtrics.embedded_fields(survey_id)
        }
        assert declared == {"creovai_interaction_id": "String", "creovai_trigger": "Nominal"}
        targets = {target["field"]: target for target in project["targets"]}  # type: ignore[union-attr]
        assert set(targets) == {"creovai_interaction_id", "creovai_trigger"}

        shown = await client.get(url(integration_id), headers=admin.headers)
        assert shown.status_code == 200
        assert shown.json()["survey_id"] == survey_id

    async def test_needs_credentials_first(
        self, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics
    ) -> None:
        integration_id = await create_integration(client, admin)
        response = await client.post(url(integration_id), json={"name": "x"}, headers=admin.headers)
        body = assert_problem(response, 409)
        assert str(body["type"]).endswith("/step-incomplete")
        assert qualtrics.surveys == {}

    async def test_only_one_project(
        self, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics
    ) -> None:
        integration_id = await create_integration(client, admin)
        await connect(client, admin, integration_id)
        await create_project(client, admin, integration_id)
        again = await client.post(url(integration_id), json={"name": "y"}, headers=admin.headers)
        assert_problem(again, 409)
        assert len(qualtrics.surveys) == 1

    async def test_a_failure_half_way_leaves_no_survey_behind(
        self, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics
    ) -> None:
        integration_id = await create_integration(client, admin)
        await connect(client, admin, integration_id)
        qualtrics.inject_fault(Fault(kind="status", status=503, path_pattern=r".*/versions$"))
        response = await client.post(url(integration_id), json={"name": "x"}, headers=admin.headers)
        body = assert_problem(response, 503)
        assert str(body["type"]).endswith("/qualtrics-unavailable")
        assert "Retry-After" in response.headers
        assert [survey for survey in qualtrics.surveys.values() if not survey.deleted] == []
        assert_problem(await client.get(url(integration_id), headers=admin.headers), 404)

    async def test_needs_recent_authentication(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        make_account: AccountFactory,
        qualtrics: FakeQualtrics,
    ) -> None:
        stale = await make_account(
            organization=admin.organization, auth_time=utc_now() - timedelta(minutes=11)
        )
        integration_id = await create_integration(client, admin)
        await connect(client, admin, integration_id)
        response = await client.post(url(integration_id), json={"name": "x"}, headers=stale.headers)
        assert_problem(response, 401)

    async def test_invalid_name(
        self, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics
    ) -> None:
        integration_id = await create_integration(client, admin)
        response = await client.post(url(integration_id), json={"name": ""}, headers=admin.headers)
        assert_problem(response, 422)

    async def test_viewer_and_other_organization(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        viewer: Account,
        other_admin: Account,
        qualtrics: FakeQualtrics,
    ) -> None:
        integration_id = await create_integration(client, admin)
        await connect(client, admin, integration_id)
        body = {"name": "x"}
        assert_problem(
            await client.post(url(integration_id), json=body, headers=viewer.headers), 403
        )
        assert_problem(
            await client.post(url(integration_id), json=body, headers=other_admin.headers), 404
        )
        assert_problem(await client.get(url(integration_id), headers=other_admin.headers), 404)
