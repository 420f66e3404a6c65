"""Step 1: Qualtrics credentials, verified against the fake before they are saved."""

import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.kit.crypto import SecretBox
from service.models import AuditLogEntry, QualtricsConnection
from service.models.base import utc_now
from service.testing.fake_qualtrics import FakeQualtrics
from tests.conftest import (
    QUALTRICS_CLIENT_SECRET,
    TEST_FERNET_KEY,
    Account,
    AccountFactory,
    connection_body,
)
from tests.helpers import assert_problem


async def new_integration(client: httpx.AsyncClient, admin: Account) -> str:
    response = await client.post("/v1/integrations", json={"name": "NPS"}, headers=admin.headers)
    integration_id: str = response.json()["id"]
    return integration_id


def url(integration_id: str) -> str:
    return f"/v1/integrations/{integration_id}/qualtrics-connection"


class TestPutConnection:
    async def test_verifies_then_stores_the_secret_encrypted_and_never_returns_it(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        qualtrics: FakeQualtrics,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        integration_id = await new_integration(client, admin)
        response = await client.put(
            url(integration_id), json=connection_body(), headers=admin.headers
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["client_secret_last4"] == QUALTRICS_CLIENT_SECRET[-4:]
        assert body["brand_id"] == "acme"
        assert body["qualtrics_user_name"] == "api@acme.example"
        assert body["subdomain"] == "iad1"
        assert QUALTRICS_CLIENT_SECRET not in response.text
        assert response.headers["ETag"] == '"integration-2"'

        read = await client.get(url(integration_id), headers=admin.headers)
        assert read.status_code == 200
        assert QUALTRICS_CLIENT_SECRET not in read.text

        async with sessionmaker() as session:
            row = await session.get(QualtricsConnection, uuid.UUID(integration_id))
            assert row is not None
            assert QUALTRICS_CLIENT_SECRET not in row.client_secret_encrypted
            assert SecretBox([TEST_FERNET_KEY]).decrypt(row.client_secret_encrypted) == (
                QUALTRICS_CLIENT_SECRET
            )
            # Nothing in the raw tables holds the secret in the clear.
            for table in ("qualtrics_connections", "audit_log"):
                rows = (await session.execute(text(f"SELECT * FROM {table}"))).all()  # noqa: S608
                assert QUALTRICS_CLIENT_SECRET not in repr(rows)
            actions = (await session.scalars(select(AuditLogEntry.action))).all()
            assert "qualtrics_connection.saved" in actions

    async def test_wrong_credentials(
        self, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics
    ) -> None:
        integration_id = await new_integration(client, admin)
        response = await client.put(
            url(integration_id), json=connection_body(client_secret="wrong"), headers=admin.headers
        )
        body = assert_problem(response, 422)
        assert str(body["type"]).endswith("/qualtrics-credentials-rejected")
        assert_problem(await client.get(url(integration_id), headers=admin.headers), 404)

    async def test_wrong_subdomain(
        self, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics
    ) -> None:
        integration_id = await new_integration(client, admin)
        response = await client.put(
            url(integration_id), json=connection_body(subdomain="fra1"), headers=admin.headers
        )
        body = assert_problem(response, 422)
        assert str(body["type"]).endswith("/qualtrics-subdomain-unknown")
        assert "fra1" in str(body["detail"])

    async def test_unreachable_host(
        self, client: httpx.AsyncClient, admin: Account, app: object
    ) -> None:
        # The app's own gateway points at a closed local port.
        from service.connections.gateway import QualtricsGateway

        gateway = QualtricsGateway(
            base_url_template="http://127.0.0.1:9/{subdomain}",
            box=app.state.secret_box,  # type: ignore[attr-defined]
        )
        app.state.qualtrics = gateway  # type: ignore[attr-defined]
        try:
            integration_id = await new_integration(client, admin)
            response = await client.put(
                url(integration_id), json=connection_body(), headers=admin.headers
            )
        finally:
            await gateway.aclose()
        body = assert_problem(response, 422)
        assert str(body["type"]).endswith("/qualtrics-unreachable")

    @pytest.mark.parametrize(
        "subdomain",
        [
            "evil.com#",
            "a.b",
            "x@evil.com",
            "127.0.0.1",
            "localhost:80",
            "a/b",
            "a\\b",
            "%2e",
            "xn--80ak6aa92e",
            "-iad1",
            "iad1-",
            "a" * 64,
            "\uff49\uff41\uff44\uff11",  # fullwidth "iad1"
            "ia\nd1",
            "iad 1",
        ],
    )
    async def test_ssrf_subdomains_are_refused_before_any_request(
        self, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics, subdomain: str
    ) -> None:
        integration_id = await new_integration(client, admin)
        before = qualtrics.stats.total
        response = await client.put(
            url(integration_id), json=connection_body(subdomain=subdomain), headers=admin.headers
        )
        body = assert_problem(response, 422)
        assert [error["pointer"] for error in body["errors"]] == ["/body/subdomain"]  # type: ignore[union-attr]
        assert qualtrics.stats.total == before

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
        integration_id = await new_integration(client, admin)
        response = await client.put(
            url(integration_id), json=connection_body(), headers=stale.headers
        )
        assert_problem(response, 401)
        assert "insufficient_user_authentication" in response.headers["WWW-Authenticate"]

    async def test_viewer_and_other_organization(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        viewer: Account,
        other_admin: Account,
        qualtrics: FakeQualtrics,
    ) -> None:
        integration_id = await new_integration(client, admin)
        assert_problem(
            await client.put(url(integration_id), json=connection_body(), headers=viewer.headers),
            403,
        )
        assert_problem(
            await client.put(
                url(integration_id), json=connection_body(), headers=other_admin.headers
            ),
            404,
        )
        assert_problem(await client.get(url(integration_id), headers=other_admin.headers), 404)
        assert_problem(await client.put(url(integration_id), json=connection_body()), 401)

    async def test_missing_fields(
        self, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics
    ) -> None:
        integration_id = await new_integration(client, admin)
        body = assert_problem(
            await client.put(url(integration_id), json={}, headers=admin.headers), 422
        )
        pointers = {error["pointer"] for error in body["errors"]}  # type: ignore[union-attr]
        assert pointers == {"/body/client_id", "/body/client_secret", "/body/subdomain"}

    async def test_stale_etag(
        self, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics
    ) -> None:
        integration_id = await new_integration(client, admin)
        response = await client.put(
            url(integration_id),
            json=connection_body(),
            headers={**admin.headers, "If-Match": '"integration-9"'},
        )
        assert_problem(response, 412)


class TestDeleteConnection:
    async def test_removes_it_and_invalidates_the_integration(
        self, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics
    ) -> None:
        integration_id = await new_integration(client, admin)
        await client.put(url(integration_id), json=connection_body(), headers=admin.headers)
        response = await client.delete(url(integration_id), headers=admin.headers)
        assert response.status_code == 204
        assert_problem(await client.get(url(integration_id), headers=admin.headers), 404)
        integration = (
            await client.get(f"/v1/integrations/{integration_id}", headers=admin.headers)
        ).json()
        assert integration["health"] == "invalid"
        assert integration["enabled"] is False
        assert integration["health_reason"] == "The Qualtrics credentials were deleted."

    async def test_nothing_to_delete(
        self, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics
    ) -> None:
        integration_id = await new_integration(client, admin)
        assert_problem(await client.delete(url(integration_id), headers=admin.headers), 404)
