"""The delivery log, retry, discard held, and enable releasing held deliveries."""

import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.models import AuditLogEntry, DeliveryStatus, Integration, IntegrationHealth
from service.models.base import utc_now
from service.testing.fake_qualtrics import FakeQualtrics
from tests.conftest import Account, AccountFactory
from tests.deliveries.conftest import T0, RecordingDispatcher, Rows
from tests.helpers import assert_problem
from tests.setup.helpers import (
    add_trigger,
    connect,
    create_integration,
    create_project,
    put_catalog,
    save_fields,
)


def log_url(integration_id: object) -> str:
    return f"/v1/integrations/{integration_id}/deliveries"


async def audit_entries(
    sessionmaker: async_sessionmaker[AsyncSession], action: str
) -> list[AuditLogEntry]:
    async with sessionmaker() as session:
        found = await session.scalars(
            select(AuditLogEntry)
            .where(AuditLogEntry.action == action)
            .order_by(AuditLogEntry.created_at)
        )
        return list(found.all())


class TestListDeliveries:
    async def test_viewer_reads_the_log_newest_first(
        self, client: httpx.AsyncClient, admin: Account, viewer: Account, rows: Rows
    ) -> None:
        integration = await rows.integration(admin)
        trigger = await rows.trigger(integration, {}, name="Everyone")
        first = await rows.interaction(admin, "call-1", T0)
        second = await rows.interaction(admin, "call-2", T0)
        older = await rows.delivery(
            integration,
            first,
            DeliveryStatus.DELIVERED,
            trigger=trigger,
            created_at=T0,
            attempts=2,
            delivered_at=T0 + timedelta(minutes=1),
            response_id="R_abc",
            last_error="Qualtrics answered 503.",
            newer_revision_after_delivery=True,
        )
        newer = await rows.delivery(
            integration, second, trigger=trigger, created_at=T0 + timedelta(hours=1)
        )

        response = await client.get(log_url(integration.id), headers=viewer.headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert [item["id"] for item in body["items"]] == [str(newer.id), str(older.id)]
        assert body["next_cursor"] is None
        item = body["items"][1]
        assert item["interaction_id"] == "call-1"
        assert item["integration_id"] == str(integration.id)
        assert item["trigger_id"] == str(trigger.id)
        assert item["trigger_name"] == "Everyone"
        assert item["status"] == "delivered"
        assert item["attempts"] == 2
        assert item["response_id"] == "R_abc"
        assert item["last_error"] == "Qualtrics answered 503."
        assert item["newer_revision_after_delivery"] is True
        assert item["interaction_revision"] == 1
        assert item["delivered_at"] is not None
        # A settled delivery shows no schedule; a pending one does.
        assert item["next_attempt_at"] is None
        assert body["items"][0]["next_attempt_at"] is not None
        assert set(item) == {
            "id",
            "integration_id",
            "interaction_id",
            "trigger_id",
            "trigger_name",
            "status",
            "attempts",
            "next_attempt_at",
            "delivered_at",
            "response_id",
            "last_error",
            "interaction_revision",
            "newer_revision_after_delivery",
            "created_at",
            "updated_at",
        }

    async def test_filters(self, client: httpx.AsyncClient, admin: Account, rows: Rows) -> None:
        integration = await rows.integration(admin)
        everyone = await rows.trigger(integration, {}, name="Everyone")
        calls = await rows.trigger(integration, {"channels": ["call"]}, name="Calls", position=1)
        statuses = [
            DeliveryStatus.PENDING,
            DeliveryStatus.FAILED,
            DeliveryStatus.DEAD,
            DeliveryStatus.HELD,
        ]
        made = []
        for index, status in enumerate(statuses):
            interaction = await rows.interaction(admin, f"call-{index}", T0)
            made.append(
                await rows.delivery(
                    integration,
                    interaction,
                    status,
                    trigger=everyone if index % 2 == 0 else calls,
                    created_at=T0 + timedelta(hours=index),
                )
            )

        async def ids(**params: object) -> list[str]:
            response = await client.get(
                log_url(integration.id),
                params=params,  # type: ignore[arg-type]
                headers=admin.headers,
            )
            assert response.status_code == 200, response.text
            return [item["id"] for item in response.json()["items"]]

        assert await ids(status=["failed", "dead"]) == [str(made[2].id), str(made[1].id)]
        assert await ids(status="held") == [str(made[3].id)]
        assert await ids(trigger_id=str(calls.id)) == [str(made[3].id), str(made[1].id)]
        # created_from inclusive, created_to exclusive.
        assert await ids(
            created_from=(T0 + timedelta(hours=1)).isoformat(),
            created_to=(T0 + timedelta(hours=3)).isoformat(),
        ) == [str(made[2].id), str(made[1].id)]
        assert await ids(interaction_id="call-2") == [str(made[2].id)]
        assert await ids(interaction_id="call-2", status="pending") == []
        assert await ids(interaction_id="nope") == []

    async def test_pages_through_every_delivery_once(
        self, client: httpx.AsyncClient, admin: Account, rows: Rows
    ) -> None:
        integration = await rows.integration(admin)
        made = []
        for index in range(5):
            interaction = await rows.interaction(admin, f"call-{index}", T0)
            # Two share a creation time: the id breaks the tie.
            created_at = T0 + timedelta(minutes=min(index, 3))
            made.append(await rows.delivery(integration, interaction, created_at=created_at))

        seen: list[str] = []
        cursor = None
        for _ in range(5):
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            response = await client.get(
                log_url(integration.id), params=params, headers=admin.headers
            )
            assert response.status_code == 200, response.text
            body = response.json()
            seen += [item["id"] for item in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == 5
        assert set(seen) == {str(delivery.id) for delivery in made}
        assert seen[-1] == str(made[0].id)

    async def test_refusals(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        other_admin: Account,
        rows: Rows,
    ) -> None:
        integration = await rows.integration(admin)
        url = log_url(integration.id)
        assert_problem(await client.get(url), 401)
        assert_problem(await client.get(url, headers=other_admin.headers), 404)
        assert_problem(await client.get(log_url(uuid.uuid4()), headers=admin.headers), 404)
        empty = assert_problem(
            await client.get(
                url,
                params={"created_from": T0.isoformat(), "created_to": T0.isoformat()},
                headers=admin.headers,
            ),
            422,
        )
        assert empty["errors"] == [
            {"pointer": "/query/created_to", "detail": "Must be after created_from."}
        ]
        naive = assert_problem(
            await client.get(
                url, params={"created_from": "2026-11-02T09:00:00"}, headers=admin.headers
            ),
            422,
        )
        assert naive["errors"][0]["pointer"] == "/query/created_from"  # type: ignore[index]
        assert_problem(await client.get(url, params={"status": "lost"}, headers=admin.headers), 422)
        assert_problem(
            await client.get(url, params={"cursor": "garbage"}, headers=admin.headers), 400
        )


class TestGetDelivery:
    async def test_attempts_newest_first_and_capped(
        self, client: httpx.AsyncClient, admin: Account, viewer: Account, rows: Rows
    ) -> None:
        integration = await rows.integration(admin)
        interaction = await rows.interaction(admin, "call-1", T0)
        delivery = await rows.delivery(integration, interaction, DeliveryStatus.DEAD, attempts=8)
        await rows.attempts(delivery, 105)

        response = await client.get(f"/v1/deliveries/{delivery.id}", headers=viewer.headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["id"] == str(delivery.id)
        assert body["interaction_id"] == "call-1"
        assert body["status"] == "dead"
        assert body["attempts_recorded"] == 105
        log = body["attempt_log"]
        assert len(log) == 100
        assert [entry["response_body"] for entry in log[:2]] == ["attempt 104", "attempt 103"]
        assert log[-1]["response_body"] == "attempt 5"
        assert log[0] == {
            "id": log[0]["id"],
            "started_at": log[0]["started_at"],
            "duration_ms": 204,
            "outcome": "retry",
            "status_code": 503,
            "error_class": "QualtricsServerError",
            "response_body": "attempt 104",
            "counted": True,
        }

    async def test_refusals(
        self, client: httpx.AsyncClient, admin: Account, other_admin: Account, rows: Rows
    ) -> None:
        integration = await rows.integration(admin)
        delivery = await rows.delivery(integration, await rows.interaction(admin, "c", T0))
        url = f"/v1/deliveries/{delivery.id}"
        assert_problem(await client.get(url), 401)
        assert_problem(await client.get(url, headers=other_admin.headers), 404)
        assert_problem(
            await client.get(f"/v1/deliveries/{uuid.uuid4()}", headers=admin.headers), 404
        )
        assert_problem(await client.get("/v1/deliveries/not-a-uuid", headers=admin.headers), 422)


class TestRetryDelivery:
    @pytest.mark.parametrize("status", [DeliveryStatus.FAILED, DeliveryStatus.DEAD])
    async def test_pending_again_and_enqueued_after_commit(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        rows: Rows,
        dispatcher: RecordingDispatcher,
        sessionmaker: async_sessionmaker[AsyncSession],
        status: DeliveryStatus,
    ) -> None:
        integration = await rows.integration(admin)
        interaction = await rows.interaction(admin, "call-1", T0)
        delivery = await rows.delivery(
            integration,
            interaction,
            status,
            attempts=8,
            next_attempt_at=None,
            last_error="Qualtrics answered 400: bad question id.",
        )
        await rows.attempts(delivery, 3)
        before = utc_now()

        response = await client.post(
            f"/v1/deliveries/{delivery.id}/retry",
            headers={**admin.headers, "X-Request-ID": "retry-req-1"},
        )

        assert response.status_code == 202, response.text
        body = response.json()
        assert body["status"] == "pending"
        assert body["attempts"] == 0
        stored = await rows.reload(delivery)
        assert stored.status == DeliveryStatus.PENDING
        assert stored.attempts == 0
        assert stored.next_attempt_at is not None
        assert before <= stored.next_attempt_at <= utc_now()
        # The history stays.
        detail = (await client.get(f"/v1/deliveries/{delivery.id}", headers=admin.headers)).json()
        assert detail["attempts_recorded"] == 3
        # Enqueued once, and only after the commit: a session of its own saw it pending.
        assert dispatcher.enqueued == [delivery.id]
        assert dispatcher.committed_status == {delivery.id: DeliveryStatus.PENDING}
        assert dispatcher.request_ids == ["retry-req-1"]
        [entry] = await audit_entries(sessionmaker, "delivery.retried")
        assert entry.integration_id == integration.id
        assert entry.actor_user_id == admin.user.id
        assert entry.details == {
            "delivery_id": str(delivery.id),
            "interaction_id": "call-1",
            "from_status": status.value,
            "to_status": "pending",
            "attempts_before": 8,
        }

    async def test_held_when_the_integration_is_disabled(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        rows: Rows,
        dispatcher: RecordingDispatcher,
    ) -> None:
        integration = await rows.integration(admin, health=IntegrationHealth.INVALID)
        delivery = await rows.delivery(
            integration, await rows.interaction(admin, "c", T0), DeliveryStatus.FAILED
        )
        response = await client.post(f"/v1/deliveries/{delivery.id}/retry", headers=admin.headers)
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "held"
        assert dispatcher.enqueued == []

    @pytest.mark.parametrize(
        "status",
        [
            DeliveryStatus.PENDING,
            DeliveryStatus.DELIVERED,
            DeliveryStatus.HELD,
            DeliveryStatus.DISCARDED,
        ],
    )
    async def test_only_failed_or_dead(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        rows: Rows,
        dispatcher: RecordingDispatcher,
        sessionmaker: async_sessionmaker[AsyncSession],
        status: DeliveryStatus,
    ) -> None:
        integration = await rows.integration(admin)
        delivery = await rows.delivery(integration, await rows.interaction(admin, "c", T0), status)
        refused = assert_problem(
            await client.post(f"/v1/deliveries/{delivery.id}/retry", headers=admin.headers), 409
        )
        assert str(refused["type"]).endswith("/delivery-not-retryable")
        assert f"this one is {status.value}" in str(refused["detail"])
        assert refused["delivery_status"] == status.value
        assert (await rows.reload(delivery)).status == status
        assert dispatcher.enqueued == []
        assert await audit_entries(sessionmaker, "delivery.retried") == []

    async def test_refusals(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        viewer: Account,
        other_admin: Account,
        rows: Rows,
        dispatcher: RecordingDispatcher,
    ) -> None:
        integration = await rows.integration(admin)
        delivery = await rows.delivery(
            integration, await rows.interaction(admin, "c", T0), DeliveryStatus.FAILED
        )
        url = f"/v1/deliveries/{delivery.id}/retry"
        assert_problem(await client.post(url), 401)
        assert_problem(await client.post(url, headers=viewer.headers), 403)
        assert_problem(await client.post(url, headers=other_admin.headers), 404)
        assert (await rows.reload(delivery)).status == DeliveryStatus.FAILED
        assert dispatcher.enqueued == []


class TestDiscardHeld:
    async def test_every_held_delivery_is_discarded(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        rows: Rows,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        integration = await rows.integration(admin, enabled=False)
        other = await rows.integration(admin, enabled=False)
        held = [
            await rows.delivery(
                integration, await rows.interaction(admin, f"h{i}", T0), DeliveryStatus.HELD
            )
            for i in range(3)
        ]
        pending = await rows.delivery(integration, await rows.interaction(admin, "p", T0))
        elsewhere = await rows.delivery(
            other, await rows.interaction(admin, "o", T0), DeliveryStatus.HELD
        )
        url = f"{log_url(integration.id)}/discard-held"

        response = await client.post(url, headers=admin.headers)

        assert response.status_code == 200, response.text
        assert response.json() == {"discarded": 3}
        for delivery in held:
            assert (await rows.reload(delivery)).status == DeliveryStatus.DISCARDED
        assert (await rows.reload(pending)).status == DeliveryStatus.PENDING
        assert (await rows.reload(elsewhere)).status == DeliveryStatus.HELD
        [entry] = await audit_entries(sessionmaker, "integration.held_discarded")
        assert entry.integration_id == integration.id
        assert entry.details == {"discarded": 3}

        # Nothing left to discard: nothing changes, nothing is audited.
        again = await client.post(url, headers=admin.headers)
        assert again.json() == {"discarded": 0}
        assert len(await audit_entries(sessionmaker, "integration.held_discarded")) == 1

    async def test_refusals(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        viewer: Account,
        other_admin: Account,
        make_account: AccountFactory,
        rows: Rows,
    ) -> None:
        integration = await rows.integration(admin, enabled=False)
        held = await rows.delivery(
            integration, await rows.interaction(admin, "h", T0), DeliveryStatus.HELD
        )
        stale = await make_account(
            organization=admin.organization, auth_time=utc_now() - timedelta(minutes=11)
        )
        url = f"{log_url(integration.id)}/discard-held"
        assert_problem(await client.post(url), 401)
        step_up = assert_problem(await client.post(url, headers=stale.headers), 401)
        assert str(step_up["type"]).endswith("/step-up-required")
        assert_problem(await client.post(url, headers=viewer.headers), 403)
        assert_problem(await client.post(url, headers=other_admin.headers), 404)
        assert (await rows.reload(held)).status == DeliveryStatus.HELD


class TestEnableReleasesHeld:
    async def test_held_become_pending_and_are_enqueued(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        rows: Rows,
        qualtrics: FakeQualtrics,
        dispatcher: RecordingDispatcher,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        await put_catalog(client, admin)
        integration_id = await create_integration(client, admin)
        await connect(client, admin, integration_id)
        await create_project(client, admin, integration_id)
        assert (await save_fields(client, admin, integration_id)).status_code == 200
        await add_trigger(client, admin, integration_id, {"categories": {"any": ["Frustration"]}})
        enable_url = f"/v1/integrations/{integration_id}/enable"
        assert (await client.post(enable_url, headers=admin.headers)).status_code == 200
        assert dispatcher.enqueued == []
        disabled = await client.post(
            f"/v1/integrations/{integration_id}/disable", headers=admin.headers
        )
        assert disabled.status_code == 200, disabled.text

        async with sessionmaker() as session:
            integration = await session.get(Integration, uuid.UUID(integration_id))
            assert integration is not None
        held = [
            await rows.delivery(
                integration,
                await rows.interaction(admin, f"h{i}", T0),
                DeliveryStatus.HELD,
                next_attempt_at=None,
            )
            for i in range(2)
        ]
        discarded = await rows.delivery(
            integration, await rows.interaction(admin, "d", T0), DeliveryStatus.DISCARDED
        )
        before = utc_now()

        response = await client.post(enable_url, headers=admin.headers)

        assert response.status_code == 200, response.text
        for delivery in held:
            stored = await rows.reload(delivery)
            assert stored.status == DeliveryStatus.PENDING
            assert stored.next_attempt_at is not None
            assert before <= stored.next_attempt_at <= utc_now()
        assert (await rows.reload(discarded)).status == DeliveryStatus.DISCARDED
        assert sorted(dispatcher.enqueued) == sorted(delivery.id for delivery in held)
        assert set(dispatcher.committed_status.values()) == {DeliveryStatus.PENDING}
        [entry] = await audit_entries(sessionmaker, "integration.held_released")
        assert entry.details == {"released": 2}

        # Enabling again releases nothing and enqueues nothing more.
        assert (await client.post(enable_url, headers=admin.headers)).status_code == 200
        assert len(dispatcher.enqueued) == 2
