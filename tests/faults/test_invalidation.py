"""(h) Credentials revoked in Qualtrics, (i) the survey deleted there: the integration becomes
invalid and disabled, and its deliveries are held, not failed, not lost. After (h) the admin
connects working credentials and enables the integration again, which releases what was
held: delivered, once each."""

from typing import Any

import httpx

from service.models import DeliveryStatus
from tests.conftest import QUALTRICS_CLIENT_ID, QUALTRICS_SUBDOMAIN, Account, connection_body
from tests.faults.conftest import Scenario, ScenarioFactory
from tests.worker.conftest import Workers, eventually

ROTATED_CLIENT_ID = "connector-rotated-client"
ROTATED_CLIENT_SECRET = "rotated-qualtrics-secret-8d2e61"


async def integration_state(run: Scenario) -> dict[str, Any]:
    answer = await run.client.get(
        f"/v1/integrations/{run.integration.id}", headers=run.admin.headers
    )
    assert answer.status_code == 200, answer.text
    state: dict[str, Any] = answer.json()
    return state


async def invalidated(run: Scenario) -> dict[str, Any]:
    """Until the worker has marked the integration invalid and disabled; its state then."""
    state: dict[str, Any] = {}

    async def invalid_and_disabled() -> bool:
        state.update(await integration_state(run))
        return state["health"] == "invalid" and state["enabled"] is False

    await eventually(invalid_and_disabled, within=20, explain=run.explain)
    return state


async def test_revoked_credentials_hold_deliveries_until_reconnected_and_enabled(
    scenario: ScenarioFactory,
    fake_control: httpx.AsyncClient,
    workers: Workers,
    client: httpx.AsyncClient,
    admin: Account,
) -> None:
    run = await scenario("qualtrics_credentials_revoked")
    workers.start()
    await run.acknowledge(5)
    assert await run.wait_for({DeliveryStatus.DELIVERED: 5}, within=15), run.explain()

    revoked = await fake_control.post(f"/_fake/accounts/{QUALTRICS_CLIENT_ID}/revoke-credentials")
    assert revoked.status_code == 200, revoked.text
    await run.acknowledge(10)
    state = await invalidated(run)
    assert await run.wait_for({DeliveryStatus.DELIVERED: 5, DeliveryStatus.HELD: 10}, within=15), (
        run.explain()
    )
    await run.acknowledge(5)  # while invalid: acknowledged, and held at intake
    assert dict(await run.counts()) == {DeliveryStatus.DELIVERED: 5, DeliveryStatus.HELD: 15}

    # The admin connects working credentials (the old ones stay revoked) and enables again.
    account = await fake_control.post(
        "/_fake/accounts",
        json={
            "client_id": ROTATED_CLIENT_ID,
            "client_secret": ROTATED_CLIENT_SECRET,
            "datacenter": QUALTRICS_SUBDOMAIN,
            "brand_id": "acme",
        },
    )
    assert account.status_code == 201, account.text
    connected = await client.put(
        f"/v1/integrations/{run.integration.id}/qualtrics-connection",
        json=connection_body(client_id=ROTATED_CLIENT_ID, client_secret=ROTATED_CLIENT_SECRET),
        headers=admin.headers,
    )
    assert connected.status_code == 200, connected.text
    enabled = await client.post(
        f"/v1/integrations/{run.integration.id}/enable", headers=admin.headers
    )
    assert enabled.status_code == 200, enabled.text
    run.mark("enable")

    await run.finish(
        {DeliveryStatus.DELIVERED: 20},
        within=20,
        held_before_enable=15,
    )
    assert "credentials" in state["health_reason"]
    assert (await integration_state(run))["health"] == "ok"
    assert ROTATED_CLIENT_SECRET not in run.explain_all()  # the worker never logged it


async def test_deleted_survey_holds_deliveries(
    scenario: ScenarioFactory, fake_control: httpx.AsyncClient, workers: Workers
) -> None:
    run = await scenario("qualtrics_survey_deleted")
    workers.start()
    await run.acknowledge(5)
    assert await run.wait_for({DeliveryStatus.DELIVERED: 5}, within=15), run.explain()
    # Deleting the survey deletes its responses too: count them first.
    await run.snapshot_responses()

    deleted = await fake_control.delete(f"/_fake/surveys/{run.integration.survey_id}")
    assert deleted.status_code == 200, deleted.text
    await run.acknowledge(10)
    state = await invalidated(run)
    await run.acknowledge(5)  # while invalid: acknowledged, and held at intake

    await run.finish(
        {DeliveryStatus.DELIVERED: 5, DeliveryStatus.HELD: 15}, within=20, survey_gone=True
    )
    assert "deleted" in state["health_reason"]
    held = [row for row in await run.rows() if row.status is DeliveryStatus.HELD]
    assert all(row.attempts <= 1 for row in held)  # one 404 each at most, never retried
