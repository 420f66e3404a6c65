import httpx

from tests.conftest import Account
from tests.helpers import assert_problem


class TestListAuditLog:
    async def test_admin_reads_own_organizations_entries_newest_first(
        self, client: httpx.AsyncClient, admin: Account, other_admin: Account
    ) -> None:
        created = await client.post("/v1/integrations", json={"name": "NPS"}, headers=admin.headers)
        integration_id = created.json()["id"]
        await client.patch(
            f"/v1/integrations/{integration_id}", json={"name": "CSAT"}, headers=admin.headers
        )
        await client.post("/v1/integrations", json={"name": "x"}, headers=other_admin.headers)

        response = await client.get(
            "/v1/audit-log", params={"integration_id": integration_id}, headers=admin.headers
        )
        assert response.status_code == 200
        entries = response.json()["items"]
        assert [entry["action"] for entry in entries] == [
            "integration.renamed",
            "integration.created",
        ]
        assert entries[0]["actor"] == admin.user.email
        assert entries[0]["details"] == {"from": "NPS", "to": "CSAT"}

        everything = await client.get("/v1/audit-log", headers=admin.headers)
        actions = [entry["action"] for entry in everything.json()["items"]]
        # The organization's own setup (by the CLI) is there; the other organization's is not.
        assert actions.count("integration.created") == 1
        assert "organization.created" in actions

    async def test_filter_by_action(self, client: httpx.AsyncClient, admin: Account) -> None:
        response = await client.get(
            "/v1/audit-log", params={"action": "user.created"}, headers=admin.headers
        )
        assert {entry["action"] for entry in response.json()["items"]} == {"user.created"}

    async def test_viewer_is_forbidden(self, client: httpx.AsyncClient, viewer: Account) -> None:
        assert_problem(await client.get("/v1/audit-log", headers=viewer.headers), 403)

    async def test_unauthenticated(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/v1/audit-log"), 401)
