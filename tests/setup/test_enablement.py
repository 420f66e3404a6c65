"""Step 5: readiness lists each missing step; enable needs them all; invalidation."""

from datetime import timedelta

import httpx

from service.models.base import utc_now
from service.testing.fake_qualtrics import FakeQualtrics
from tests.conftest import Account, AccountFactory, connection_body
from tests.helpers import assert_problem
from tests.setup.helpers import (
    add_trigger,
    connect,
    create_integration,
    create_project,
    put_catalog,
    save_fields,
)


async def readiness(client: httpx.AsyncClient, account: Account, integration_id: str) -> dict:  # type: ignore[type-arg]
    response = await client.get(
        f"/v1/integrations/{integration_id}/readiness", headers=account.headers
    )
    assert response.status_code == 200, response.text
    body: dict = response.json()  # type: ignore[type-arg]
    return body


def incomplete(body: dict) -> list[str]:  # type: ignore[type-arg]
    return [step["step"] for step in body["steps"] if not step["complete"]]


async def enable(
    client: httpx.AsyncClient, account: Account, integration_id: str
) -> httpx.Response:
    return await client.post(f"/v1/integrations/{integration_id}/enable", headers=account.headers)


class TestReadinessAndEnable:
    async def test_each_step_is_reported_until_all_are_done(
        self, client: httpx.AsyncClient, admin: Account, viewer: Account, qualtrics: FakeQualtrics
    ) -> None:
        await put_catalog(client, admin)
        integration_id = await create_integration(client, admin)
        all_steps = ["credentials", "project", "data_fields", "triggers"]

        for done in range(5):
            body = await readiness(client, viewer, integration_id)
            assert incomplete(body) == all_steps[done:]
            assert body["ready"] is (done == 4)
            if done < 4:
                refused = assert_problem(await enable(client, admin, integration_id), 409)
                assert [s["step"] for s in refused["incomplete_steps"]] == all_steps[done:]  # type: ignore[union-attr]
                assert all(s["reason"] for s in refused["incomplete_steps"])  # type: ignore[union-attr]
            if done == 0:
                await connect(client, admin, integration_id)
            elif done == 1:
                await create_project(client, admin, integration_id)
            elif done == 2:
                assert (await save_fields(client, admin, integration_id)).status_code == 200
            elif done == 3:
                await add_trigger(
                    client, admin, integration_id, {"categories": {"any": ["Frustration"]}}
                )

        enabled = await enable(client, admin, integration_id)
        assert enabled.status_code == 200, enabled.text
        assert enabled.json()["enabled"] is True
        assert (await readiness(client, viewer, integration_id))["enabled"] is True

        disabled = await client.post(
            f"/v1/integrations/{integration_id}/disable", headers=admin.headers
        )
        assert disabled.json()["enabled"] is False

    async def test_a_disabled_trigger_does_not_count(
        self, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics
    ) -> None:
        integration_id = await ready_integration(client, admin)
        triggers = (
            await client.get(f"/v1/integrations/{integration_id}/triggers", headers=admin.headers)
        ).json()["items"]
        await client.post(
            f"/v1/integrations/{integration_id}/triggers/{triggers[0]['id']}/disable",
            headers=admin.headers,
        )
        assert incomplete(await readiness(client, admin, integration_id)) == ["triggers"]

    async def test_enable_needs_recent_authentication_and_admin(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        viewer: Account,
        make_account: AccountFactory,
        qualtrics: FakeQualtrics,
    ) -> None:
        integration_id = await ready_integration(client, admin)
        stale = await make_account(
            organization=admin.organization, auth_time=utc_now() - timedelta(minutes=11)
        )
        assert_problem(await enable(client, stale, integration_id), 401)
        assert_problem(await enable(client, viewer, integration_id), 403)

    async def test_changed_credentials_that_cannot_reach_the_survey_invalidate_and_disable(
        self, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics
    ) -> None:
        integration_id = await ready_integration(client, admin)
        assert (await enable(client, admin, integration_id)).status_code == 200
        # Another Qualtrics user of the same data center cannot see our survey.
        qualtrics.register_account("someone-else", "their-secret", datacenter="iad1", brand_id="b2")
        response = await client.put(
            f"/v1/integrations/{integration_id}/qualtrics-connection",
            json=connection_body(client_id="someone-else", client_secret="their-secret"),
            headers=admin.headers,
        )
        assert response.status_code == 200, response.text
        integration = (
            await client.get(f"/v1/integrations/{integration_id}", headers=admin.headers)
        ).json()
        assert integration["health"] == "invalid"
        assert integration["enabled"] is False
        assert "not reachable" in integration["health_reason"]

        # Enabling re-checks, and is refused while the survey stays out of reach.
        refused = assert_problem(await enable(client, admin, integration_id), 409)
        assert str(refused["type"]).endswith("/integration-invalid")

        # The right credentials again: the survey is reachable, the integration healthy.
        await connect(client, admin, integration_id)
        assert (await enable(client, admin, integration_id)).status_code == 200

    async def test_other_organization_gets_404(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        other_admin: Account,
        qualtrics: FakeQualtrics,
    ) -> None:
        integration_id = await create_integration(client, admin)
        assert_problem(
            await client.get(
                f"/v1/integrations/{integration_id}/readiness", headers=other_admin.headers
            ),
            404,
        )
        assert_problem(await enable(client, other_admin, integration_id), 404)


async def ready_integration(client: httpx.AsyncClient, admin: Account) -> str:
    await put_catalog(client, admin)
    integration_id = await create_integration(client, admin)
    await connect(client, admin, integration_id)
    await create_project(client, admin, integration_id)
    assert (await save_fields(client, admin, integration_id)).status_code == 200
    await add_trigger(client, admin, integration_id, {"categories": {"any": ["Frustration"]}})
    return integration_id
