"""Webhook intake: signature, dedupe, outbox rows committed before 202, updates, catalogue."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.models import Delivery, DeliveryStatus, Interaction, WebhookReceipt
from service.testing.fake_qualtrics import FakeQualtrics
from tests.conftest import Account
from tests.helpers import assert_problem
from tests.setup.helpers import (
    add_trigger,
    create_integration,
    enabled_integration,
    put_catalog,
)
from tests.webhooks.helpers import (
    STALE,
    RecordingDispatcher,
    count,
    event,
    interaction,
    organization_secret,
    post_event,
    signed_headers,
)


class TestIntake:
    async def test_a_matching_interaction_is_stored_with_its_delivery_before_202(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        qualtrics: FakeQualtrics,
        sessionmaker: async_sessionmaker[AsyncSession],
        dispatcher: RecordingDispatcher,
    ) -> None:
        integration_id = await enabled_integration(client, admin)
        secret = await organization_secret(sessionmaker, admin.organization.id)
        response = await post_event(client, admin.organization.id, secret, event(interaction()))
        assert response.status_code == 202, response.text
        assert response.json() == {"status": "accepted", "deliveries": 1}
        async with sessionmaker() as session:
            delivery = (await session.scalars(select(Delivery))).one()
        assert str(delivery.integration_id) == integration_id
        assert delivery.status == DeliveryStatus.PENDING
        assert delivery.trigger_name == "Frustrated callers"
        assert dispatcher.enqueued == [delivery.id]

    async def test_a_non_matching_interaction_creates_no_delivery(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        qualtrics: FakeQualtrics,
        sessionmaker: async_sessionmaker[AsyncSession],
        dispatcher: RecordingDispatcher,
    ) -> None:
        await enabled_integration(client, admin)
        secret = await organization_secret(sessionmaker, admin.organization.id)
        body = event(interaction(categories=[{"name": "Thanks"}]))
        response = await post_event(client, admin.organization.id, secret, body)
        assert response.json() == {"status": "accepted", "deliveries": 0}
        assert await count(sessionmaker, Interaction) == 1
        assert await count(sessionmaker, Delivery) == 0
        assert dispatcher.enqueued == []

    async def test_duplicates_by_webhook_id_and_by_interaction_id_create_nothing(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        qualtrics: FakeQualtrics,
        sessionmaker: async_sessionmaker[AsyncSession],
        dispatcher: RecordingDispatcher,
    ) -> None:
        await enabled_integration(client, admin)
        secret = await organization_secret(sessionmaker, admin.organization.id)
        data = interaction()
        body = event(data)
        first = await post_event(client, admin.organization.id, secret, body, webhook_id="msg_1")
        again = await post_event(client, admin.organization.id, secret, body, webhook_id="msg_1")
        other_id = await post_event(client, admin.organization.id, secret, event(data))
        assert first.status_code == 202
        assert (again.status_code, again.json()["status"]) == (200, "duplicate")
        assert (other_id.status_code, other_id.json()["status"]) == (200, "duplicate")
        assert await count(sessionmaker, Interaction) == 1
        assert await count(sessionmaker, Delivery) == 1
        assert len(dispatcher.enqueued) == 1

    async def test_twenty_concurrent_copies_create_one_delivery(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        qualtrics: FakeQualtrics,
        sessionmaker: async_sessionmaker[AsyncSession],
        dispatcher: RecordingDispatcher,
    ) -> None:
        await enabled_integration(client, admin)
        secret = await organization_secret(sessionmaker, admin.organization.id)
        body = event(interaction())
        headers = signed_headers(secret, body, webhook_id="msg_same")
        url = f"/v1/webhooks/{admin.organization.id}/interactions"
        answers = await asyncio.gather(
            *(client.post(url, content=body, headers=headers) for _ in range(20))
        )
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200] * 19 + [202]
        assert await count(sessionmaker, Delivery) == 1
        assert await count(sessionmaker, WebhookReceipt) == 1

    async def test_disabled_integration_holds_its_matches(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        qualtrics: FakeQualtrics,
        sessionmaker: async_sessionmaker[AsyncSession],
        dispatcher: RecordingDispatcher,
    ) -> None:
        integration_id = await enabled_integration(client, admin)
        await client.post(f"/v1/integrations/{integration_id}/disable", headers=admin.headers)
        secret = await organization_secret(sessionmaker, admin.organization.id)
        await post_event(client, admin.organization.id, secret, event(interaction()))
        async with sessionmaker() as session:
            delivery = (await session.scalars(select(Delivery))).one()
        assert delivery.status == DeliveryStatus.HELD
        # Not enqueued, and not stamped as if it were (only pending deliveries are).
        assert delivery.last_enqueued_at is None
        assert delivery.next_attempt_at == delivery.created_at
        assert dispatcher.enqueued == []

    async def test_never_enabled_integrations_collect_nothing(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        qualtrics: FakeQualtrics,
        sessionmaker: async_sessionmaker[AsyncSession],
        dispatcher: RecordingDispatcher,
    ) -> None:
        await put_catalog(client, admin)
        integration_id = await create_integration(client, admin)
        await add_trigger(client, admin, integration_id, {})
        secret = await organization_secret(sessionmaker, admin.organization.id)
        response = await post_event(client, admin.organization.id, secret, event(interaction()))
        assert response.json()["deliveries"] == 0


class TestUpdates:
    async def test_newer_update_replaces_the_interaction_and_pending_sends_it(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        qualtrics: FakeQualtrics,
        sessionmaker: async_sessionmaker[AsyncSession],
        dispatcher: RecordingDispatcher,
    ) -> None:
        await enabled_integration(client, admin)
        secret = await organization_secret(sessionmaker, admin.organization.id)
        data = interaction()
        await post_event(client, admin.organization.id, secret, event(data))
        newer = {**data, "metadata": {"region": "APAC"}}
        later = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
        update = event(newer, "interaction.updated", timestamp=later)
        response = await post_event(client, admin.organization.id, secret, update)
        assert response.status_code == 202
        async with sessionmaker() as session:
            stored = (await session.scalars(select(Interaction))).one()
            delivery = (await session.scalars(select(Delivery))).one()
        assert stored.revision == 2
        assert stored.payload["metadata"] == {"region": "APAC"}
        assert delivery.interaction_revision == 2

        older = event(data, "interaction.updated", timestamp="2020-01-01T00:00:00Z")
        stale = await post_event(client, admin.organization.id, secret, older)
        assert (stale.status_code, stale.json()["status"]) == (200, "stale")

    async def test_an_update_can_make_an_interaction_match(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        qualtrics: FakeQualtrics,
        sessionmaker: async_sessionmaker[AsyncSession],
        dispatcher: RecordingDispatcher,
    ) -> None:
        await enabled_integration(client, admin)
        secret = await organization_secret(sessionmaker, admin.organization.id)
        data = interaction(categories=[])
        await post_event(client, admin.organization.id, secret, event(data))
        assert await count(sessionmaker, Delivery) == 0
        later = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()
        matching = {**data, "categories": [{"name": "Frustration"}]}
        response = await post_event(
            client,
            admin.organization.id,
            secret,
            event(matching, "interaction.updated", timestamp=later),
        )
        assert response.json() == {"status": "accepted", "deliveries": 1}

    async def test_catalog_updated_event_replaces_the_catalogue(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        secret = await organization_secret(sessionmaker, admin.organization.id)
        body = event({"categories": [{"name": "Escalation"}]}, "catalog.updated")
        response = await post_event(client, admin.organization.id, secret, body)
        assert (response.status_code, response.json()["status"]) == (200, "catalog_updated")
        catalog = (await client.get("/v1/catalog", headers=admin.headers)).json()
        assert [c["name"] for c in catalog["categories"]] == ["Escalation"]


class TestRejections:
    @pytest.mark.parametrize(
        "tamper",
        [
            "wrong-secret",
            "stale",
            "future",
            "missing-signature",
            "missing-id",
            "bare-v1",
            "too-many-commas",
            "not-base64",
            "garbage-timestamp",
            "huge-timestamp",
        ],
    )
    async def test_bad_signatures_are_401_and_store_nothing(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
        tamper: str,
    ) -> None:
        secret = await organization_secret(sessionmaker, admin.organization.id)
        body = event(interaction())
        headers = signed_headers(secret, body)
        if tamper == "wrong-secret":
            headers = signed_headers("whsec_" + "QUJD" * 8, body)
        elif tamper == "stale":
            headers = signed_headers(secret, body, at=datetime.now(UTC) - STALE)
        elif tamper == "future":
            headers = signed_headers(secret, body, at=datetime.now(UTC) + STALE)
        elif tamper == "missing-signature":
            del headers["webhook-signature"]
        elif tamper == "missing-id":
            del headers["webhook-id"]
        elif tamper == "bare-v1":
            headers["webhook-signature"] = "v1"
        elif tamper == "too-many-commas":
            headers["webhook-signature"] = "v1,a,b"
        elif tamper == "not-base64":
            headers["webhook-signature"] = "v1,@@@@"
        elif tamper == "garbage-timestamp":
            headers["webhook-timestamp"] = "nan"
        elif tamper == "huge-timestamp":
            headers["webhook-timestamp"] = "99999999999999999999"
        response = await client.post(
            f"/v1/webhooks/{admin.organization.id}/interactions", content=body, headers=headers
        )
        assert_problem(response, 401)
        assert await count(sessionmaker, Interaction) == 0
        assert await count(sessionmaker, WebhookReceipt) == 0

    async def test_unknown_organization_is_indistinguishable_from_a_bad_signature(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        secret = await organization_secret(sessionmaker, admin.organization.id)
        response = await post_event(client, uuid.uuid4(), secret, event(interaction()))
        body = assert_problem(response, 401)
        assert str(body["type"]).endswith("/invalid-signature")

    async def test_non_utf8_body_is_refused(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        secret = await organization_secret(sessionmaker, admin.organization.id)
        headers = signed_headers(secret, b"{}")
        response = await client.post(
            f"/v1/webhooks/{admin.organization.id}/interactions",
            content=b"\xff\xfe{}",
            headers=headers,
        )
        assert_problem(response, 401)

    @pytest.mark.parametrize(
        ("body", "status"),
        [
            (b"{not json", 400),
            (b"[]", 422),
            (b'{"type": "interaction.completed"}', 422),
            (b'{"type": "something.else", "timestamp": "2026-11-26T00:00:00Z", "data": {}}', 422),
            (
                b'{"type": "interaction.completed", "timestamp": "2026-11-26T00:00:00Z", '
                b'"data": {"id": "x", "channel": "fax", "started_at": "2026-11-26T00:00:00Z"}}',
                422,
            ),
            (
                b'{"type": "interaction.completed", "timestamp": "2026-11-26T00:00:00Z", '
                b'"data": {"id": "x", "channel": "call", "started_at": "2026-11-26T00:00:00"}}',
                422,
            ),
            # Deeper than the JSON parser's recursion limit: malformed, not a crash.
            (b"[" * 5000 + b"]" * 5000, 400),
        ],
    )
    async def test_malformed_signed_bodies_are_4xx_and_store_nothing(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
        body: bytes,
        status: int,
    ) -> None:
        secret = await organization_secret(sessionmaker, admin.organization.id)
        response = await post_event(client, admin.organization.id, secret, body)
        assert_problem(response, status)
        assert await count(sessionmaker, Interaction) == 0

    async def test_oversized_body_is_413(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        secret = await organization_secret(sessionmaker, admin.organization.id)
        body = event(interaction(metadata={"transcript": "x" * (2 * 1024 * 1024)}))
        response = await post_event(client, admin.organization.id, secret, body)
        assert_problem(response, 413)


class TestSecretRotation:
    async def test_new_and_old_secrets_both_verify_during_the_overlap(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        old = await organization_secret(sessionmaker, admin.organization.id)
        rotated = await client.post("/v1/webhook-secrets/rotate", headers=admin.headers)
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["secret"]
        assert new.startswith("whsec_")
        assert new != old
        for secret in (new, old):
            body = event({"categories": []}, "catalog.updated")
            response = await post_event(client, admin.organization.id, secret, body)
            assert response.status_code == 200, response.text

    async def test_rotation_needs_a_recent_admin(
        self, client: httpx.AsyncClient, viewer: Account
    ) -> None:
        assert_problem(await client.post("/v1/webhook-secrets/rotate", headers=viewer.headers), 403)
        assert_problem(await client.post("/v1/webhook-secrets/rotate"), 401)
