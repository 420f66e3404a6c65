import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.models import AuditLogEntry, Integration, Role
from service.models.base import utc_now
from tests.conftest import Account, AccountFactory
from tests.helpers import assert_problem


async def create(client: httpx.AsyncClient, account: Account, name: str = "NPS") -> httpx.Response:
    return await client.post("/v1/integrations", json={"name": name}, headers=account.headers)


async def audit_actions(
    sessionmaker: async_sessionmaker[AsyncSession], integration_id: str
) -> list[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(AuditLogEntry)
            .where(AuditLogEntry.integration_id == uuid.UUID(integration_id))
            .order_by(AuditLogEntry.created_at)
        )
        return [row.action for row in rows]


class TestCreateIntegration:
    async def test_creates_a_disabled_integration(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        response = await create(client, admin, "  NPS follow-up  ")
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["name"] == "NPS follow-up"
        assert body["enabled"] is False
        assert body["health"] == "ok"
        assert response.headers["Location"] == f"/v1/integrations/{body['id']}"
        assert response.headers["ETag"] == '"integration-1"'
        assert await audit_actions(sessionmaker, body["id"]) == ["integration.created"]

    async def test_unauthenticated(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.post("/v1/integrations", json={"name": "x"}), 401)

    async def test_viewer_is_forbidden(self, client: httpx.AsyncClient, viewer: Account) -> None:
        assert_problem(await create(client, viewer), 403)

    async def test_organization_without_qualtrics_is_forbidden(
        self, client: httpx.AsyncClient, make_account: AccountFactory
    ) -> None:
        account = await make_account(qualtrics_enabled=False)
        body = assert_problem(await create(client, account), 403)
        assert "not enabled for your organization" in str(body["detail"])

    async def test_duplicate_name_conflicts(
        self, client: httpx.AsyncClient, admin: Account
    ) -> None:
        assert (await create(client, admin, "NPS")).status_code == 201
        assert_problem(await create(client, admin, "NPS"), 409)

    async def test_same_name_in_another_organization_is_fine(
        self, client: httpx.AsyncClient, admin: Account, other_admin: Account
    ) -> None:
        assert (await create(client, admin, "NPS")).status_code == 201
        assert (await create(client, other_admin, "NPS")).status_code == 201

    @pytest.mark.parametrize(
        ("body", "pointer"),
        [
            ({}, "/body/name"),
            ({"name": ""}, "/body/name"),
            ({"name": "   "}, "/body/name"),
            ({"name": "x" * 201}, "/body/name"),
            ({"name": "tab\tname"}, "/body/name"),
            ({"name": 42}, "/body/name"),
            ({"name": "ok", "enabled": True}, "/body/enabled"),
        ],
    )
    async def test_invalid_bodies_answer_422(
        self, client: httpx.AsyncClient, admin: Account, body: object, pointer: str
    ) -> None:
        response = await client.post("/v1/integrations", json=body, headers=admin.headers)
        problem = assert_problem(response, 422)
        assert [error["pointer"] for error in problem["errors"]] == [pointer]  # type: ignore[attr-defined]

    async def test_malformed_json_answers_400(
        self, client: httpx.AsyncClient, admin: Account
    ) -> None:
        response = await client.post(
            "/v1/integrations",
            content=b'{"name": ',
            headers={**admin.headers, "Content-Type": "application/json"},
        )
        assert_problem(response, 400)


class TestListIntegrations:
    async def test_pages_through_own_integrations_only(
        self, client: httpx.AsyncClient, admin: Account, viewer: Account, other_admin: Account
    ) -> None:
        for name in ("a", "b", "c"):
            assert (await create(client, admin, name)).status_code == 201
        assert (await create(client, other_admin, "theirs")).status_code == 201

        first = await client.get("/v1/integrations?limit=2", headers=viewer.headers)
        assert first.status_code == 200
        page = first.json()
        assert [item["name"] for item in page["items"]] == ["c", "b"]
        assert page["next_cursor"]
        second = await client.get(
            "/v1/integrations",
            params={"limit": 2, "cursor": page["next_cursor"]},
            headers=viewer.headers,
        )
        assert [item["name"] for item in second.json()["items"]] == ["a"]
        assert second.json()["next_cursor"] is None

    async def test_bad_cursor_answers_400(self, client: httpx.AsyncClient, admin: Account) -> None:
        response = await client.get("/v1/integrations?cursor=bm9wZQ", headers=admin.headers)
        assert_problem(response, 400)

    @pytest.mark.parametrize("limit", [0, 201, -1])
    async def test_limit_out_of_range_answers_422(
        self, client: httpx.AsyncClient, admin: Account, limit: int
    ) -> None:
        response = await client.get(f"/v1/integrations?limit={limit}", headers=admin.headers)
        assert_problem(response, 422)

    async def test_unauthenticated(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/v1/integrations"), 401)


class TestGetIntegration:
    async def test_returns_it_with_etag(
        self, client: httpx.AsyncClient, admin: Account, viewer: Account
    ) -> None:
        integration_id = (await create(client, admin)).json()["id"]
        response = await client.get(f"/v1/integrations/{integration_id}", headers=viewer.headers)
        assert response.status_code == 200
        assert response.json()["id"] == integration_id
        assert response.headers["ETag"] == '"integration-1"'

    async def test_other_organizations_integration_is_not_found(
        self, client: httpx.AsyncClient, admin: Account, other_admin: Account
    ) -> None:
        integration_id = (await create(client, admin)).json()["id"]
        response = await client.get(
            f"/v1/integrations/{integration_id}", headers=other_admin.headers
        )
        assert_problem(response, 404)

    async def test_malformed_id_answers_422(
        self, client: httpx.AsyncClient, admin: Account
    ) -> None:
        assert_problem(await client.get("/v1/integrations/nope", headers=admin.headers), 422)


class TestUpdateIntegration:
    async def test_rename_with_current_etag(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        created = await create(client, admin, "old")
        integration_id = created.json()["id"]
        response = await client.patch(
            f"/v1/integrations/{integration_id}",
            json={"name": "new"},
            headers={**admin.headers, "If-Match": created.headers["ETag"]},
        )
        assert response.status_code == 200, response.text
        assert response.json()["name"] == "new"
        assert response.headers["ETag"] == '"integration-2"'
        assert await audit_actions(sessionmaker, integration_id) == [
            "integration.created",
            "integration.renamed",
        ]

    async def test_stale_etag_answers_412_and_changes_nothing(
        self, client: httpx.AsyncClient, admin: Account
    ) -> None:
        created = await create(client, admin, "old")
        url = f"/v1/integrations/{created.json()['id']}"
        first = await client.patch(
            url,
            json={"name": "first"},
            headers={**admin.headers, "If-Match": created.headers["ETag"]},
        )
        assert first.status_code == 200
        second = await client.patch(
            url,
            json={"name": "second"},
            headers={**admin.headers, "If-Match": created.headers["ETag"]},
        )
        assert_problem(second, 412)
        assert (await client.get(url, headers=admin.headers)).json()["name"] == "first"

    async def test_without_if_match_applies(
        self, client: httpx.AsyncClient, admin: Account
    ) -> None:
        integration_id = (await create(client, admin, "old")).json()["id"]
        response = await client.patch(
            f"/v1/integrations/{integration_id}", json={"name": "new"}, headers=admin.headers
        )
        assert response.status_code == 200

    async def test_rename_to_a_taken_name_conflicts(
        self, client: httpx.AsyncClient, admin: Account
    ) -> None:
        await create(client, admin, "taken")
        integration_id = (await create(client, admin, "mine")).json()["id"]
        response = await client.patch(
            f"/v1/integrations/{integration_id}", json={"name": "taken"}, headers=admin.headers
        )
        assert_problem(response, 409)

    async def test_viewer_is_forbidden(
        self, client: httpx.AsyncClient, admin: Account, viewer: Account
    ) -> None:
        integration_id = (await create(client, admin)).json()["id"]
        response = await client.patch(
            f"/v1/integrations/{integration_id}", json={"name": "x"}, headers=viewer.headers
        )
        assert_problem(response, 403)

    async def test_other_organization_gets_404(
        self, client: httpx.AsyncClient, admin: Account, other_admin: Account
    ) -> None:
        integration_id = (await create(client, admin)).json()["id"]
        response = await client.patch(
            f"/v1/integrations/{integration_id}", json={"name": "x"}, headers=other_admin.headers
        )
        assert_problem(response, 404)


class TestDeleteIntegration:
    async def test_deletes_and_audits(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        created = await create(client, admin)
        integration_id = created.json()["id"]
        url = f"/v1/integrations/{integration_id}"
        response = await client.delete(
            url, headers={**admin.headers, "If-Match": created.headers["ETag"]}
        )
        assert response.status_code == 204
        assert_problem(await client.get(url, headers=admin.headers), 404)
        assert await audit_actions(sessionmaker, integration_id) == [
            "integration.created",
            "integration.deleted",
        ]

    async def test_stale_etag_answers_412(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        integration_id = (await create(client, admin)).json()["id"]
        response = await client.delete(
            f"/v1/integrations/{integration_id}",
            headers={**admin.headers, "If-Match": '"integration-7"'},
        )
        assert_problem(response, 412)
        async with sessionmaker() as session:
            assert await session.get(Integration, uuid.UUID(integration_id)) is not None

    async def test_other_organization_gets_404(
        self, client: httpx.AsyncClient, admin: Account, other_admin: Account
    ) -> None:
        integration_id = (await create(client, admin)).json()["id"]
        response = await client.delete(
            f"/v1/integrations/{integration_id}", headers=other_admin.headers
        )
        assert_problem(response, 404)

    async def test_viewer_is_forbidden(
        self, client: httpx.AsyncClient, admin: Account, make_account: AccountFactory
    ) -> None:
        viewer = await make_account(role=Role.VIEWER, organization=admin.organization)
        integration_id = (await create(client, admin)).json()["id"]
        response = await client.delete(f"/v1/integrations/{integration_id}", headers=viewer.headers)
        assert_problem(response, 403)


class TestDeleteNeedsRecentAuthentication:
    async def test_old_authentication_gets_a_step_up_challenge(
        self, client: httpx.AsyncClient, admin: Account, make_account: AccountFactory
    ) -> None:
        stale = await make_account(
            organization=admin.organization, auth_time=utc_now() - timedelta(minutes=11)
        )
        integration_id = (await create(client, admin)).json()["id"]
        url = f"/v1/integrations/{integration_id}"

        response = await client.delete(url, headers=stale.headers)
        body = assert_problem(response, 401)
        assert body["type"].endswith("/step-up-required")  # type: ignore[union-attr]
        challenge = response.headers["WWW-Authenticate"]
        assert 'error="insufficient_user_authentication"' in challenge
        assert 'max_age="600"' in challenge
        # Nothing was deleted; a fresh sign-in may.
        assert (await client.get(url, headers=admin.headers)).status_code == 200
        assert (await client.delete(url, headers=admin.headers)).status_code == 204

    async def test_authentication_just_inside_the_window_is_enough(
        self, client: httpx.AsyncClient, admin: Account, make_account: AccountFactory
    ) -> None:
        recent = await make_account(
            organization=admin.organization, auth_time=utc_now() - timedelta(minutes=9)
        )
        integration_id = (await create(client, admin)).json()["id"]
        response = await client.delete(f"/v1/integrations/{integration_id}", headers=recent.headers)
        assert response.status_code == 204
