"""Replay of stored interactions through current triggers, and a trigger's dry run."""

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.deliveries import replay as replay_module
from service.models import AuditLogEntry, Delivery, DeliveryStatus, Integration, Interaction
from service.models.base import utc_now
from tests.conftest import Account, AccountFactory
from tests.deliveries.conftest import T0, RecordingDispatcher, Rows
from tests.helpers import assert_problem

WINDOW = {"from": T0.isoformat(), "to": (T0 + timedelta(days=7)).isoformat()}


def replay_url(integration: Integration) -> str:
    return f"/v1/integrations/{integration.id}/replay"


async def stored(
    rows: Rows,
    account: Account,
    external_id: str,
    started_at: datetime,
    *,
    channel: str = "call",
    tei: float = 8.0,
) -> Interaction:
    return await rows.interaction(
        account,
        external_id,
        started_at,
        channel=channel,
        scores=[{"name": "TEI", "value": tei}],
    )


class Scenario:
    """Three triggers and interactions in, around and outside the window (see `build`)."""

    integration: Integration
    chats: Any
    low_tei: Any
    # The interactions that match, in start order, with the trigger name recorded.
    expected: list[tuple[str, str]]
    already_delivered: Delivery


async def build(rows: Rows, admin: Account, other_admin: Account, *, enabled: bool) -> Scenario:
    scenario = Scenario()
    integration = scenario.integration = await rows.integration(admin, enabled=enabled)
    other_integration = await rows.integration(admin)
    scenario.chats = await rows.trigger(integration, {"channels": ["chat"]}, name="Chats")
    scenario.low_tei = await rows.trigger(
        integration, {"scores": {"TEI": {"max": 5}}}, name="Low TEI", position=1
    )
    await rows.trigger(integration, {}, name="Everyone (off)", position=2, enabled=False)
    hour = timedelta(hours=1)

    await stored(rows, admin, "i0-call-low", T0, tei=4.6)  # `from` is inclusive
    await stored(rows, admin, "i1-chat-high", T0 + hour, channel="chat")
    await stored(rows, admin, "i2-call-high", T0 + 2 * hour)  # only the disabled trigger
    await stored(rows, admin, "i3-chat-low", T0 + 3 * hour, channel="chat", tei=2)
    await stored(rows, admin, "out-at-to", T0 + timedelta(days=7), tei=1)  # `to` is exclusive
    await stored(rows, admin, "out-before", T0 - timedelta(seconds=1), tei=1)
    delivered = await stored(rows, admin, "has-delivery", T0 + 4 * hour, tei=1)
    scenario.already_delivered = await rows.delivery(
        integration, delivered, DeliveryStatus.DELIVERED
    )
    elsewhere = await stored(rows, admin, "i8-other-integration", T0 + 5 * hour, tei=3)
    await rows.delivery(other_integration, elsewhere, DeliveryStatus.DELIVERED)
    await stored(rows, admin, "i9-same-start", T0 + 5 * hour, tei=3)
    await stored(rows, other_admin, "other-org", T0 + hour, channel="chat", tei=1)

    matches = {
        "i0-call-low": "Low TEI",
        "i1-chat-high": "Chats",
        "i3-chat-low": "Chats",
        "i8-other-integration": "Low TEI",
        "i9-same-start": "Low TEI",
    }
    scenario.expected = list(matches.items())
    return scenario


async def created_by_replay(
    sessionmaker: async_sessionmaker[AsyncSession], scenario: Scenario
) -> list[tuple[str, str, DeliveryStatus, uuid.UUID]]:
    async with sessionmaker() as session:
        found = await session.execute(
            select(Interaction.external_id, Delivery.trigger_name, Delivery.status, Delivery.id)
            .join(Interaction, Interaction.id == Delivery.interaction_id)
            .where(
                Delivery.integration_id == scenario.integration.id,
                Delivery.id != scenario.already_delivered.id,
            )
            .order_by(Interaction.started_at, Interaction.external_id)
        )
        return [(external_id, name, status, row_id) for external_id, name, status, row_id in found]


async def replay_audit(sessionmaker: async_sessionmaker[AsyncSession]) -> list[AuditLogEntry]:
    async with sessionmaker() as session:
        found = await session.scalars(
            select(AuditLogEntry).where(AuditLogEntry.action == "integration.replayed")
        )
        return list(found.all())


class TestReplay:
    async def test_a_dry_run_counts_and_creates_nothing(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        other_admin: Account,
        rows: Rows,
        dispatcher: RecordingDispatcher,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        scenario = await build(rows, admin, other_admin, enabled=True)

        response = await client.post(
            replay_url(scenario.integration), json=WINDOW, headers=admin.headers
        )

        assert response.status_code == 200, response.text
        body = response.json()
        sample = body.pop("sample")
        assert body == {
            "dry_run": True,
            "evaluated": 6,
            "matched": 5,
            "created": 0,
            "status": None,
            "exceeds_limit": False,
        }
        # Earliest start first; the two that share a start time come in id order.
        expected = [external_id for external_id, _ in scenario.expected]
        assert sample[:3] == expected[:3]
        assert set(sample[3:]) == set(expected[3:])
        assert await created_by_replay(sessionmaker, scenario) == []
        assert dispatcher.enqueued == []
        assert await replay_audit(sessionmaker) == []

    @pytest.mark.parametrize("chunk_size", [2, 500])
    async def test_a_real_run_creates_each_match_once(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        other_admin: Account,
        rows: Rows,
        dispatcher: RecordingDispatcher,
        sessionmaker: async_sessionmaker[AsyncSession],
        monkeypatch: pytest.MonkeyPatch,
        chunk_size: int,
    ) -> None:
        # Chunks of 2 cut between the two interactions that share a start time.
        monkeypatch.setattr(replay_module, "CHUNK_SIZE", chunk_size)
        scenario = await build(rows, admin, other_admin, enabled=True)

        response = await client.post(
            replay_url(scenario.integration),
            json={**WINDOW, "dry_run": False},
            headers=admin.headers,
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["dry_run"] is False
        assert (body["evaluated"], body["matched"], body["created"]) == (6, 5, 5)
        assert body["status"] == "pending"
        created = await created_by_replay(sessionmaker, scenario)
        assert [(external_id, name) for external_id, name, _, _ in created] == scenario.expected
        assert {status for _, _, status, _ in created} == {DeliveryStatus.PENDING}
        # Enqueued after the commit, exactly the new ones.
        assert sorted(dispatcher.enqueued) == sorted(row_id for *_, row_id in created)
        assert set(dispatcher.committed_status.values()) == {DeliveryStatus.PENDING}
        [entry] = await replay_audit(sessionmaker)
        assert entry.integration_id == scenario.integration.id
        assert entry.details == {
            "from": T0.isoformat(),
            "to": (T0 + timedelta(days=7)).isoformat(),
            "evaluated": 6,
            "matched": 5,
            "created": 5,
            "status": "pending",
        }

        # Again: every match has its delivery now, so nothing new.
        again = await client.post(
            replay_url(scenario.integration),
            json={**WINDOW, "dry_run": False},
            headers=admin.headers,
        )
        assert again.status_code == 200, again.text
        assert (again.json()["evaluated"], again.json()["matched"]) == (1, 0)
        assert again.json()["created"] == 0
        assert len(await created_by_replay(sessionmaker, scenario)) == 5
        assert len(dispatcher.enqueued) == 5

    async def test_held_while_the_integration_is_disabled(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        other_admin: Account,
        rows: Rows,
        dispatcher: RecordingDispatcher,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        scenario = await build(rows, admin, other_admin, enabled=False)
        response = await client.post(
            replay_url(scenario.integration),
            json={**WINDOW, "dry_run": False},
            headers=admin.headers,
        )
        assert response.status_code == 200, response.text
        assert (response.json()["created"], response.json()["status"]) == (5, "held")
        created = await created_by_replay(sessionmaker, scenario)
        assert {status for _, _, status, _ in created} == {DeliveryStatus.HELD}
        assert dispatcher.enqueued == []

    async def test_too_many_matches_are_refused_whole(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        other_admin: Account,
        rows: Rows,
        dispatcher: RecordingDispatcher,
        sessionmaker: async_sessionmaker[AsyncSession],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(replay_module, "MAX_REPLAY_DELIVERIES", 4)
        monkeypatch.setattr(replay_module, "CHUNK_SIZE", 2)
        scenario = await build(rows, admin, other_admin, enabled=True)
        url = replay_url(scenario.integration)

        dry = await client.post(url, json=WINDOW, headers=admin.headers)
        assert dry.status_code == 200, dry.text
        assert (dry.json()["matched"], dry.json()["exceeds_limit"]) == (5, True)

        refused = assert_problem(
            await client.post(url, json={**WINDOW, "dry_run": False}, headers=admin.headers), 422
        )
        assert str(refused["type"]).endswith("/replay-too-large")
        assert "Narrow the window" in str(refused["detail"])
        assert await created_by_replay(sessionmaker, scenario) == []
        assert dispatcher.enqueued == []
        assert await replay_audit(sessionmaker) == []

    async def test_too_many_interactions_are_refused_up_front(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        other_admin: Account,
        rows: Rows,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(replay_module, "MAX_REPLAY_INTERACTIONS", 5)
        scenario = await build(rows, admin, other_admin, enabled=True)
        for dry_run in (True, False):
            refused = assert_problem(
                await client.post(
                    replay_url(scenario.integration),
                    json={**WINDOW, "dry_run": dry_run},
                    headers=admin.headers,
                ),
                422,
            )
            assert "6 interactions" in str(refused["detail"])

    @pytest.mark.parametrize(
        ("body", "pointer"),
        [
            ({"from": T0.isoformat(), "to": T0.isoformat()}, "/body/to"),
            ({"from": T0.isoformat(), "to": (T0 - timedelta(hours=1)).isoformat()}, "/body/to"),
            (
                {"from": T0.isoformat(), "to": (T0 + timedelta(days=31, seconds=1)).isoformat()},
                "/body/to",
            ),
            ({"from": "2026-11-02T09:00:00", "to": WINDOW["to"]}, "/body/from"),
            ({"to": WINDOW["to"]}, "/body/from"),
            ({**WINDOW, "dry_run": False, "extra": 1}, "/body/extra"),
        ],
    )
    async def test_bad_windows(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        rows: Rows,
        body: dict[str, Any],
        pointer: str,
    ) -> None:
        integration = await rows.integration(admin)
        problem = assert_problem(
            await client.post(replay_url(integration), json=body, headers=admin.headers), 422
        )
        assert [error["pointer"] for error in problem["errors"]] == [pointer]  # type: ignore[union-attr]

    async def test_a_window_of_31_days_is_allowed(
        self, client: httpx.AsyncClient, admin: Account, rows: Rows
    ) -> None:
        integration = await rows.integration(admin)
        body = {"from": T0.isoformat(), "to": (T0 + timedelta(days=31)).isoformat()}
        response = await client.post(replay_url(integration), json=body, headers=admin.headers)
        assert response.status_code == 200, response.text
        assert response.json()["evaluated"] == 0

    async def test_refusals(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        viewer: Account,
        other_admin: Account,
        make_account: AccountFactory,
        rows: Rows,
    ) -> None:
        integration = await rows.integration(admin)
        stale = await make_account(
            organization=admin.organization, auth_time=utc_now() - timedelta(minutes=11)
        )
        url = replay_url(integration)
        assert_problem(await client.post(url, json=WINDOW), 401)
        step_up = assert_problem(await client.post(url, json=WINDOW, headers=stale.headers), 401)
        assert str(step_up["type"]).endswith("/step-up-required")
        assert_problem(await client.post(url, json=WINDOW, headers=viewer.headers), 403)
        assert_problem(await client.post(url, json=WINDOW, headers=other_admin.headers), 404)


def sampled(trigger_id: uuid.UUID, interaction_id: str, rate: float) -> bool:
    """Design §5, written out independently of the engine."""
    digest = hashlib.sha256(f"{trigger_id}:{interaction_id}".encode()).hexdigest()
    return int(digest[:8], 16) / 2**32 < rate


class TestTriggerDryRun:
    # Chosen so that the sample keeps some, not all, of the otherwise selected interactions.
    TRIGGER_ID = uuid.UUID("0b3f6c1e-2d4a-4e5b-9c7d-8e9f0a1b2c3d")

    async def prepare(self, rows: Rows, admin: Account, other_admin: Account) -> Integration:
        integration = await rows.integration(admin)
        await rows.trigger(integration, {}, name="First")
        # Disabled: the dry run ignores `enabled`.
        await rows.trigger(
            integration,
            {"channels": ["call"], "scores": {"TEI": {"max": 5}}, "sample_rate": 0.5},
            name="Low TEI calls",
            position=1,
            enabled=False,
            trigger_id=self.TRIGGER_ID,
        )
        for index in range(12):
            await stored(
                rows,
                admin,
                f"int-{index:02d}",
                T0 + timedelta(hours=index),
                channel="chat" if index % 3 == 0 else "call",
                tei=index,
            )
        await stored(rows, other_admin, "other-org", T0 + timedelta(days=1), tei=0)
        return integration

    def expected(self, indexes: range) -> list[str]:
        """By hand: calls (index not a multiple of 3) with TEI <= 5, kept by the sample."""
        return [
            f"int-{index:02d}"
            for index in reversed(indexes)  # most recent first
            if index % 3 != 0 and index <= 5 and sampled(self.TRIGGER_ID, f"int-{index:02d}", 0.5)
        ]

    def url(self, integration: Integration) -> str:
        return f"/v1/integrations/{integration.id}/triggers/{self.TRIGGER_ID}/test"

    async def test_counts_match_a_hand_computation(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        viewer: Account,
        other_admin: Account,
        rows: Rows,
    ) -> None:
        integration = await self.prepare(rows, admin, other_admin)
        everything = self.expected(range(12))
        # The sample rate decides something here: neither none nor all of the four survive.
        assert 0 < len(everything) < 4

        response = await client.post(self.url(integration), headers=viewer.headers)

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["evaluated"] == 12
        assert body["matched"] == len(everything)
        assert [match["interaction_id"] for match in body["matches"]] == everything
        first = body["matches"][0]
        index = int(first["interaction_id"].removeprefix("int-"))
        assert datetime.fromisoformat(first["started_at"]) == T0 + timedelta(hours=index)

        # The 8 most recent: int-04 to int-11.
        limited = await client.post(
            self.url(integration), json={"limit": 8}, headers=viewer.headers
        )
        assert limited.status_code == 200, limited.text
        assert limited.json()["evaluated"] == 8
        assert [m["interaction_id"] for m in limited.json()["matches"]] == self.expected(
            range(4, 12)
        )

    async def test_at_most_50_matches_are_listed(
        self, client: httpx.AsyncClient, admin: Account, rows: Rows
    ) -> None:
        integration = await rows.integration(admin)
        trigger = await rows.trigger(integration, {}, name="Everyone")
        for index in range(55):
            await stored(rows, admin, f"int-{index:02d}", T0 + timedelta(minutes=index))
        response = await client.post(
            f"/v1/integrations/{integration.id}/triggers/{trigger.id}/test",
            json={"limit": 1000},
            headers=admin.headers,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["evaluated"], body["matched"], len(body["matches"])) == (55, 55, 50)
        assert body["matches"][0]["interaction_id"] == "int-54"

    async def test_refusals(
        self, client: httpx.AsyncClient, admin: Account, other_admin: Account, rows: Rows
    ) -> None:
        integration = await rows.integration(admin)
        trigger = await rows.trigger(integration, {}, name="Everyone")
        elsewhere = await rows.trigger(await rows.integration(admin), {}, name="Elsewhere")
        base = f"/v1/integrations/{integration.id}/triggers"
        url = f"{base}/{trigger.id}/test"
        assert_problem(await client.post(url), 401)
        assert_problem(await client.post(url, headers=other_admin.headers), 404)
        # Another integration's trigger is not this integration's.
        assert_problem(await client.post(f"{base}/{elsewhere.id}/test", headers=admin.headers), 404)
        for limit in (0, 1001):
            problem = assert_problem(
                await client.post(url, json={"limit": limit}, headers=admin.headers), 422
            )
            assert problem["errors"][0]["pointer"] == "/body/limit"  # type: ignore[index]
