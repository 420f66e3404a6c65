import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.interactions.schemas import INTERACTION_EXAMPLE, Interaction
from service.models import AuditLogEntry
from service.triggers.matching import TriggerSet, first_match
from service.triggers.service import trigger_service
from tests.conftest import Account, AccountFactory
from tests.helpers import assert_problem

CATALOG: dict[str, Any] = {
    "categories": [{"name": "Frustration"}, {"name": "Repeat contact"}, {"name": "Cancellation"}],
    "category_groups": [{"name": "Effort", "members": ["Frustration", "Repeat contact"]}],
    "scores": [{"name": "TEI", "min": 0, "max": 10}, {"name": "AIS", "min": -100, "max": 100}],
    "custom_metadata_fields": [{"name": "region"}, {"name": "Product line"}],
    "call_group_types": [{"name": "Team"}],
}

FULL_CRITERIA: dict[str, Any] = {
    "channels": ["call"],
    "directions": ["inbound", "unknown"],
    "date_from": "2026-01-01",
    "date_to": "2026-12-31",
    "days_of_week": [1, 2, 3, 4, 5],
    "time_of_day": {"from": "08:00", "to": "18:00:30"},
    "timezone": "Europe/London",
    "countries": ["gbr"],
    "languages": ["ENG"],
    "categories": {"any": ["Frustration"], "none": ["Cancellation"]},
    "category_groups": {"all": ["Effort"]},
    "teams": ["Billing"],
    "agents": ["agent-7"],
    "customers": ["cust-42"],
    "numbers_dialed": ["+441234567890"],
    "talk_time_seconds": {"min": 0},
    "duration_seconds": {"min": 60, "max": 3600},
    "scores": {"TEI": {"max": 5}, "AIS": {}},
    "metadata": {"region": ["EMEA", 5, True]},
    "sample_rate": 1,
}


def triggers_url(integration_id: str, trigger_id: str | None = None, action: str = "") -> str:
    url = f"/v1/integrations/{integration_id}/triggers"
    if trigger_id is not None:
        url += f"/{trigger_id}"
    return url + (f"/{action}" if action else "")


async def put_catalog(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.put("/v1/catalog", json=CATALOG, headers=account.headers)
    assert response.status_code == 200, response.text


async def new_integration(client: httpx.AsyncClient, account: Account, name: str = "NPS") -> str:
    response = await client.post("/v1/integrations", json={"name": name}, headers=account.headers)
    assert response.status_code == 201, response.text
    integration_id: str = response.json()["id"]
    return integration_id


async def create(
    client: httpx.AsyncClient,
    account: Account,
    integration_id: str,
    name: str = "Frustrated",
    **body: Any,
) -> httpx.Response:
    return await client.post(
        triggers_url(integration_id), json={"name": name, **body}, headers=account.headers
    )


async def created(
    client: httpx.AsyncClient, account: Account, integration_id: str, name: str, **body: Any
) -> dict[str, Any]:
    response = await create(client, account, integration_id, name, **body)
    assert response.status_code == 201, response.text
    trigger: dict[str, Any] = response.json()
    return trigger


async def names_in_order(
    client: httpx.AsyncClient, account: Account, integration_id: str
) -> list[str]:
    response = await client.get(triggers_url(integration_id), headers=account.headers)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [item["position"] for item in items] == list(range(len(items)))
    return [item["name"] for item in items]


async def audit_rows(
    sessionmaker: async_sessionmaker[AsyncSession], integration_id: str
) -> list[AuditLogEntry]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(AuditLogEntry)
            .where(AuditLogEntry.integration_id == uuid.UUID(integration_id))
            .where(AuditLogEntry.action.like("trigger.%"))
            .order_by(AuditLogEntry.created_at)
        )
        return list(rows)


async def trigger_actions(
    sessionmaker: async_sessionmaker[AsyncSession], integration_id: str
) -> list[str]:
    return [row.action for row in await audit_rows(sessionmaker, integration_id)]


def pointers(body: dict[str, object]) -> list[str]:
    errors = body["errors"]
    assert isinstance(errors, list)
    return [error["pointer"] for error in errors]


@pytest.fixture
async def integration_id(client: httpx.AsyncClient, admin: Account) -> str:
    await put_catalog(client, admin)
    return await new_integration(client, admin)


class TestCreateTrigger:
    async def test_creates_it_last_with_location_etag_and_audit(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        integration_id: str,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        response = await create(
            client, admin, integration_id, "  Frustrated  ", criteria=FULL_CRITERIA
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["name"] == "Frustrated"
        assert body["enabled"] is True
        assert body["position"] == 0
        assert body["integration_id"] == integration_id
        assert body["version"] == 1
        assert response.headers["ETag"] == '"trigger-1"'
        assert response.headers["Location"] == triggers_url(integration_id, body["id"])
        criteria = body["criteria"]
        assert criteria["countries"] == ["GBR"]
        assert criteria["languages"] == ["eng"]
        assert criteria["time_of_day"] == {"from": "08:00", "to": "18:00:30"}
        assert criteria["metadata"] == {"region": ["EMEA", "5", "true"]}
        assert criteria["categories"] == {
            "any": ["Frustration"],
            "all": [],
            "none": ["Cancellation"],
        }
        rows = await audit_rows(sessionmaker, integration_id)
        assert [row.action for row in rows] == ["trigger.created"]
        assert rows[0].details["trigger_id"] == body["id"]
        assert rows[0].details["name"] == "Frustrated"
        assert rows[0].details["criteria"]["time_of_day"] == {"from": "08:00", "to": "18:00:30"}
        assert rows[0].actor == admin.user.email

    async def test_defaults_match_everything(
        self, client: httpx.AsyncClient, admin: Account, integration_id: str
    ) -> None:
        body = await created(client, admin, integration_id, "All")
        assert body["criteria"]["timezone"] == "UTC"
        assert body["criteria"]["channels"] is None
        disabled = await created(client, admin, integration_id, "Off", enabled=False, criteria={})
        assert disabled["enabled"] is False
        assert disabled["position"] == 1

    async def test_appends_in_order(
        self, client: httpx.AsyncClient, admin: Account, integration_id: str
    ) -> None:
        for name in ("a", "b", "c"):
            await created(client, admin, integration_id, name)
        assert await names_in_order(client, admin, integration_id) == ["a", "b", "c"]

    async def test_unauthenticated(self, client: httpx.AsyncClient, integration_id: str) -> None:
        assert_problem(await client.post(triggers_url(integration_id), json={"name": "x"}), 401)

    async def test_viewer_is_forbidden(
        self, client: httpx.AsyncClient, viewer: Account, integration_id: str
    ) -> None:
        assert_problem(await create(client, viewer, integration_id), 403)

    async def test_other_organizations_integration_is_not_found(
        self, client: httpx.AsyncClient, other_admin: Account, integration_id: str
    ) -> None:
        await put_catalog(client, other_admin)
        assert_problem(await create(client, other_admin, integration_id), 404)

    async def test_unknown_integration_is_not_found(
        self, client: httpx.AsyncClient, admin: Account
    ) -> None:
        assert_problem(await create(client, admin, str(uuid.uuid4())), 404)

    async def test_duplicate_name_conflicts(
        self, client: httpx.AsyncClient, admin: Account, integration_id: str
    ) -> None:
        await created(client, admin, integration_id, "Same")
        assert_problem(await create(client, admin, integration_id, "Same"), 409)
        other_integration = await new_integration(client, admin, "Other")
        await created(client, admin, other_integration, "Same")

    async def test_at_most_the_cap(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        integration_id: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr("service.triggers.service.MAX_TRIGGERS_PER_INTEGRATION", 2)
        await created(client, admin, integration_id, "a")
        await created(client, admin, integration_id, "b")
        body = assert_problem(await create(client, admin, integration_id, "c"), 409)
        assert "most allowed" in str(body["detail"])

    @pytest.mark.parametrize(
        ("criteria", "pointer"),
        [
            ({"duration_seconds": {"min": 600, "max": 60}}, "/body/criteria/duration_seconds"),
            ({"talk_time_seconds": {"min": 2, "max": 1}}, "/body/criteria/talk_time_seconds"),
            ({"duration_seconds": {"min": -1}}, "/body/criteria/duration_seconds/min"),
            ({"scores": {"TEI": {"min": 5, "max": 4}}}, "/body/criteria/scores/TEI"),
            ({"scores": {"TEI": {"min": "5"}}}, "/body/criteria/scores/TEI/min"),
            ({"timezone": "Mars/Olympus"}, "/body/criteria/timezone"),
            ({"timezone": "../../etc/passwd"}, "/body/criteria/timezone"),
            ({"timezone": ""}, "/body/criteria/timezone"),
            ({"date_from": "2026-12-01", "date_to": "2026-11-30"}, "/body/criteria/date_to"),
            ({"date_from": "2026-13-01"}, "/body/criteria/date_from"),
            ({"date_from": 1767225600}, "/body/criteria/date_from"),
            ({"date_to": "2026-11-30T00:00:00"}, "/body/criteria/date_to"),
            ({"days_of_week": [1, 8]}, "/body/criteria/days_of_week/1"),
            ({"days_of_week": [0]}, "/body/criteria/days_of_week/0"),
            ({"days_of_week": ["1"]}, "/body/criteria/days_of_week/0"),
            ({"days_of_week": [1, 2, 3, 4, 5, 6, 7, 1]}, "/body/criteria/days_of_week"),
            ({"time_of_day": {"from": "9:00", "to": "17:00"}}, "/body/criteria/time_of_day/from"),
            ({"time_of_day": {"from": "09:00", "to": "24:00"}}, "/body/criteria/time_of_day/to"),
            ({"time_of_day": {"from": "09:00"}}, "/body/criteria/time_of_day/to"),
            ({"time_of_day": {"from": "09:00", "to": "09:00:00"}}, "/body/criteria/time_of_day"),
            ({"sample_rate": 1.5}, "/body/criteria/sample_rate"),
            ({"sample_rate": -0.1}, "/body/criteria/sample_rate"),
            ({"sample_rate": "0.5"}, "/body/criteria/sample_rate"),
            ({"channels": ["fax"]}, "/body/criteria/channels/0"),
            ({"directions": ["sideways"]}, "/body/criteria/directions/0"),
            ({"countries": ["GB"]}, "/body/criteria/countries/0"),
            ({"languages": ["en"]}, "/body/criteria/languages/0"),
            ({"agents": [""]}, "/body/criteria/agents/0"),
            ({"agents": [f"a{i}" for i in range(1001)]}, "/body/criteria/agents"),
            ({"teams": ["x" * 201]}, "/body/criteria/teams/0"),
            (
                {"categories": {"any": ["Frustration"], "some": []}},
                "/body/criteria/categories/some",
            ),
            (
                {"categories": {"any": ["Frustration"] * 501}},
                "/body/criteria/categories/any",
            ),
            (
                {"metadata": {"region": [f"r{i}" for i in range(1001)]}},
                "/body/criteria/metadata/region",
            ),
            ({"metadata": {"region": "EMEA"}}, "/body/criteria/metadata/region"),
            ({"colour": ["red"]}, "/body/criteria/colour"),
        ],
    )
    async def test_invalid_criteria_answer_422_with_a_pointer(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        integration_id: str,
        criteria: dict[str, Any],
        pointer: str,
    ) -> None:
        body = assert_problem(await create(client, admin, integration_id, criteria=criteria), 422)
        assert pointers(body) == [pointer]

    async def test_time_of_day_keys_are_from_and_to(
        self, client: httpx.AsyncClient, admin: Account, integration_id: str
    ) -> None:
        criteria = {"time_of_day": {"from_": "09:00", "to": "10:00"}}
        body = assert_problem(await create(client, admin, integration_id, criteria=criteria), 422)
        assert sorted(pointers(body)) == [
            "/body/criteria/time_of_day/from",
            "/body/criteria/time_of_day/from_",
        ]

    @pytest.mark.parametrize(
        ("body", "pointer"),
        [
            ({}, "/body/name"),
            ({"name": "  "}, "/body/name"),
            ({"name": "x" * 201}, "/body/name"),
            ({"name": "a\nb"}, "/body/name"),
            ({"name": "ok", "enabled": "maybe"}, "/body/enabled"),
            ({"name": "ok", "position": 3}, "/body/position"),
            ({"name": "ok", "criteria": []}, "/body/criteria"),
        ],
    )
    async def test_invalid_bodies_answer_422(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        integration_id: str,
        body: dict[str, Any],
        pointer: str,
    ) -> None:
        response = await client.post(triggers_url(integration_id), json=body, headers=admin.headers)
        assert pointers(assert_problem(response, 422)) == [pointer]

    async def test_every_structural_mistake_is_reported_at_once(
        self, client: httpx.AsyncClient, admin: Account, integration_id: str
    ) -> None:
        criteria = {
            "duration_seconds": {"min": 10, "max": 1},
            "timezone": "Nowhere/Special",
            "date_from": "2026-02-01",
            "date_to": "2026-01-01",
            "days_of_week": [9],
            "scores": {"TEI": {"min": 3, "max": 1}},
        }
        body = assert_problem(await create(client, admin, integration_id, criteria=criteria), 422)
        assert sorted(pointers(body)) == [
            "/body/criteria/date_to",
            "/body/criteria/days_of_week/0",
            "/body/criteria/duration_seconds",
            "/body/criteria/scores/TEI",
            "/body/criteria/timezone",
        ]

    async def test_names_are_checked_against_the_catalogue(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        integration_id: str,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        criteria = {
            "categories": {"any": ["Frustration", "frustration"], "none": ["Churn"]},
            "category_groups": {"all": ["Effort", "Efort"]},
            "scores": {"TEI": {"min": 1}, "NPS": {}},
            "metadata": {"region": ["EMEA"], "a/b~c": ["x"]},
            "teams": ["Not checked: call groups are not in the catalogue"],
        }
        body = assert_problem(await create(client, admin, integration_id, criteria=criteria), 422)
        errors = {error["pointer"]: error["detail"] for error in body["errors"]}  # type: ignore[attr-defined]
        assert list(errors) == [
            "/body/criteria/categories/any/1",
            "/body/criteria/categories/none/0",
            "/body/criteria/category_groups/all/1",
            "/body/criteria/scores/NPS",
            "/body/criteria/metadata/a~1b~0c",
        ]
        assert 'Did you mean "Frustration"?' in errors["/body/criteria/categories/any/1"]
        assert "not a category group" in errors["/body/criteria/category_groups/all/1"]
        assert "not a score" in errors["/body/criteria/scores/NPS"]
        assert "custom metadata field" in errors["/body/criteria/metadata/a~1b~0c"]
        assert await trigger_actions(sessionmaker, integration_id) == []

    async def test_without_a_catalogue_no_name_is_known(
        self, client: httpx.AsyncClient, make_account: AccountFactory
    ) -> None:
        account = await make_account()
        integration = await new_integration(client, account)
        criteria = {"categories": {"any": ["Frustration"]}}
        body = assert_problem(await create(client, account, integration, criteria=criteria), 422)
        assert pointers(body) == ["/body/criteria/categories/any/0"]
        await created(client, account, integration, "No names", criteria={"channels": ["chat"]})


class TestListTriggers:
    async def test_in_position_order_for_viewers_too(
        self, client: httpx.AsyncClient, admin: Account, viewer: Account, integration_id: str
    ) -> None:
        assert await names_in_order(client, viewer, integration_id) == []
        for name in ("first", "second"):
            await created(client, admin, integration_id, name)
        assert await names_in_order(client, viewer, integration_id) == ["first", "second"]

    async def test_only_this_integrations_triggers(
        self, client: httpx.AsyncClient, admin: Account, integration_id: str
    ) -> None:
        other = await new_integration(client, admin, "Other")
        await created(client, admin, other, "theirs")
        await created(client, admin, integration_id, "mine")
        assert await names_in_order(client, admin, integration_id) == ["mine"]

    async def test_unauthenticated(self, client: httpx.AsyncClient, integration_id: str) -> None:
        assert_problem(await client.get(triggers_url(integration_id)), 401)

    async def test_other_organizations_integration_is_not_found(
        self, client: httpx.AsyncClient, other_admin: Account, integration_id: str
    ) -> None:
        response = await client.get(triggers_url(integration_id), headers=other_admin.headers)
        assert_problem(response, 404)

    async def test_malformed_integration_id_answers_422(
        self, client: httpx.AsyncClient, admin: Account
    ) -> None:
        assert_problem(await client.get(triggers_url("nope"), headers=admin.headers), 422)


class TestGetTrigger:
    async def test_returns_it_with_etag(
        self, client: httpx.AsyncClient, admin: Account, viewer: Account, integration_id: str
    ) -> None:
        trigger = await created(client, admin, integration_id, "t", criteria=FULL_CRITERIA)
        response = await client.get(
            triggers_url(integration_id, trigger["id"]), headers=viewer.headers
        )
        assert response.status_code == 200
        assert response.json() == trigger
        assert response.headers["ETag"] == '"trigger-1"'

    async def test_unauthenticated(
        self, client: httpx.AsyncClient, admin: Account, integration_id: str
    ) -> None:
        trigger = await created(client, admin, integration_id, "t")
        assert_problem(await client.get(triggers_url(integration_id, trigger["id"])), 401)

    async def test_other_organization_is_not_found(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        other_admin: Account,
        integration_id: str,
    ) -> None:
        trigger = await created(client, admin, integration_id, "t")
        response = await client.get(
            triggers_url(integration_id, trigger["id"]), headers=other_admin.headers
        )
        assert_problem(response, 404)

    async def test_trigger_of_another_integration_is_not_found(
        self, client: httpx.AsyncClient, admin: Account, integration_id: str
    ) -> None:
        other = await new_integration(client, admin, "Other")
        theirs = await created(client, admin, other, "theirs")
        response = await client.get(
            triggers_url(integration_id, theirs["id"]), headers=admin.headers
        )
        assert_problem(response, 404)

    async def test_unknown_and_malformed_ids(
        self, client: httpx.AsyncClient, admin: Account, integration_id: str
    ) -> None:
        missing = triggers_url(integration_id, str(uuid.uuid4()))
        assert_problem(await client.get(missing, headers=admin.headers), 404)
        malformed = triggers_url(integration_id, "nope")
        assert_problem(await client.get(malformed, headers=admin.headers), 422)


class TestUpdateTrigger:
    async def test_rename_and_replace_criteria(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        integration_id: str,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        trigger = await created(client, admin, integration_id, "old")
        response = await client.patch(
            triggers_url(integration_id, trigger["id"]),
            json={"name": "new", "criteria": {"channels": ["chat"]}},
            headers={**admin.headers, "If-Match": '"trigger-1"'},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["name"] == "new"
        assert body["criteria"]["channels"] == ["chat"]
        assert body["version"] == 2
        assert response.headers["ETag"] == '"trigger-2"'
        rows = await audit_rows(sessionmaker, integration_id)
        assert [row.action for row in rows] == ["trigger.created", "trigger.updated"]
        changes = rows[1].details["changes"]
        assert changes["name"] == {"from": "old", "to": "new"}
        assert changes["criteria"]["to"] == {"channels": ["chat"], "timezone": "UTC"}

    async def test_unchanged_values_change_nothing(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        integration_id: str,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        trigger = await created(client, admin, integration_id, "t", criteria={"channels": ["call"]})
        response = await client.patch(
            triggers_url(integration_id, trigger["id"]),
            json={"name": "t", "criteria": {"channels": ["call"]}, "enabled": True, "position": 0},
            headers=admin.headers,
        )
        assert response.status_code == 200, response.text
        assert response.headers["ETag"] == '"trigger-1"'
        assert await trigger_actions(sessionmaker, integration_id) == ["trigger.created"]

    async def test_enabled_flag_is_audited_as_enable_or_disable(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        integration_id: str,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        trigger = await created(client, admin, integration_id, "t")
        url = triggers_url(integration_id, trigger["id"])
        response = await client.patch(url, json={"enabled": False}, headers=admin.headers)
        assert response.json()["enabled"] is False
        assert await trigger_actions(sessionmaker, integration_id) == [
            "trigger.created",
            "trigger.disabled",
        ]

    async def test_stale_etag_answers_412_and_changes_nothing(
        self, client: httpx.AsyncClient, admin: Account, integration_id: str
    ) -> None:
        trigger = await created(client, admin, integration_id, "t")
        url = triggers_url(integration_id, trigger["id"])
        first = await client.patch(
            url, json={"name": "first"}, headers={**admin.headers, "If-Match": '"trigger-1"'}
        )
        assert first.status_code == 200
        second = await client.patch(
            url, json={"name": "second"}, headers={**admin.headers, "If-Match": '"trigger-1"'}
        )
        assert_problem(second, 412)
        assert (await client.get(url, headers=admin.headers)).json()["name"] == "first"

    async def test_duplicate_name_conflicts(
        self, client: httpx.AsyncClient, admin: Account, integration_id: str
    ) -> None:
        await created(client, admin, integration_id, "a")
        b = await created(client, admin, integration_id, "b")
        response = await client.patch(
            triggers_url(integration_id, b["id"]), json={"name": "a"}, headers=admin.headers
        )
        assert_problem(response, 409)

    async def test_criteria_are_checked_against_the_catalogue(
        self, client: httpx.AsyncClient, admin: Account, integration_id: str
    ) -> None:
        trigger = await created(client, admin, integration_id, "t")
        response = await client.patch(
            triggers_url(integration_id, trigger["id"]),
            json={"criteria": {"scores": {"CSAT": {"min": 1}}}},
            headers=admin.headers,
        )
        assert pointers(assert_problem(response, 422)) == ["/body/criteria/scores/CSAT"]

    @pytest.mark.parametrize(
        ("body", "pointer"),
        [
            ({"name": None}, "/body/name"),
            ({"criteria": None}, "/body/criteria"),
            ({"enabled": None}, "/body/enabled"),
            ({"position": None}, "/body/position"),
            ({"position": -1}, "/body/position"),
            ({"position": 1}, "/body/position"),  # only one trigger: 0 is the last position
            ({"position": "0"}, "/body/position"),
            (
                {"criteria": {"duration_seconds": {"min": 2, "max": 1}}},
                "/body/criteria/duration_seconds",
            ),
            ({"id": str(uuid.uuid4())}, "/body/id"),
        ],
    )
    async def test_invalid_bodies_answer_422(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        integration_id: str,
        body: dict[str, Any],
        pointer: str,
    ) -> None:
        trigger = await created(client, admin, integration_id, "t")
        response = await client.patch(
            triggers_url(integration_id, trigger["id"]), json=body, headers=admin.headers
        )
        assert pointers(assert_problem(response, 422)) == [pointer]

    async def test_viewer_is_forbidden(
        self, client: httpx.AsyncClient, admin: Account, viewer: Account, integration_id: str
    ) -> None:
        trigger = await created(client, admin, integration_id, "t")
        response = await client.patch(
            triggers_url(integration_id, trigger["id"]), json={"name": "x"}, headers=viewer.headers
        )
        assert_problem(response, 403)

    async def test_unauthenticated(
        self, client: httpx.AsyncClient, admin: Account, integration_id: str
    ) -> None:
        trigger = await created(client, admin, integration_id, "t")
        response = await client.patch(triggers_url(integration_id, trigger["id"]), json={})
        assert_problem(response, 401)

    async def test_other_organization_and_other_integration_are_not_found(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        other_admin: Account,
        integration_id: str,
    ) -> None:
        trigger = await created(client, admin, integration_id, "t")
        url = triggers_url(integration_id, trigger["id"])
        assert_problem(
            await client.patch(url, json={"name": "x"}, headers=other_admin.headers), 404
        )
        other = await new_integration(client, admin, "Other")
        wrong_parent = triggers_url(other, trigger["id"])
        assert_problem(
            await client.patch(wrong_parent, json={"name": "x"}, headers=admin.headers), 404
        )


class TestReorder:
    async def test_moving_shifts_the_others(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        integration_id: str,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        ids = {
            name: (await created(client, admin, integration_id, name))["id"]
            for name in ("a", "b", "c", "d")
        }

        async def move(name: str, position: int) -> httpx.Response:
            return await client.patch(
                triggers_url(integration_id, ids[name]),
                json={"position": position},
                headers=admin.headers,
            )

        response = await move("d", 0)
        assert response.status_code == 200, response.text
        assert response.json()["position"] == 0
        assert await names_in_order(client, admin, integration_id) == ["d", "a", "b", "c"]
        assert (await move("d", 3)).status_code == 200
        assert await names_in_order(client, admin, integration_id) == ["a", "b", "c", "d"]
        assert (await move("a", 2)).status_code == 200
        assert await names_in_order(client, admin, integration_id) == ["b", "c", "a", "d"]

        # A neighbour whose position changed has a new version (and ETag).
        neighbour = await client.get(triggers_url(integration_id, ids["b"]), headers=admin.headers)
        assert neighbour.headers["ETag"] == '"trigger-4"'
        untouched = await client.get(triggers_url(integration_id, ids["d"]), headers=admin.headers)
        assert untouched.headers["ETag"] == '"trigger-3"'

        rows = await audit_rows(sessionmaker, integration_id)
        moves = [
            row.details["changes"]["position"] for row in rows if row.action == "trigger.updated"
        ]
        assert moves == [{"from": 3, "to": 0}, {"from": 0, "to": 3}, {"from": 0, "to": 2}]

    async def test_move_and_rename_together(
        self, client: httpx.AsyncClient, admin: Account, integration_id: str
    ) -> None:
        await created(client, admin, integration_id, "a")
        b = await created(client, admin, integration_id, "b")
        response = await client.patch(
            triggers_url(integration_id, b["id"]),
            json={"position": 0, "name": "B"},
            headers={**admin.headers, "If-Match": '"trigger-1"'},
        )
        assert response.status_code == 200, response.text
        assert await names_in_order(client, admin, integration_id) == ["B", "a"]


class TestEnableDisable:
    async def test_disable_then_enable(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        integration_id: str,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        trigger = await created(client, admin, integration_id, "t")
        disable = triggers_url(integration_id, trigger["id"], "disable")
        enable = triggers_url(integration_id, trigger["id"], "enable")

        response = await client.post(disable, headers={**admin.headers, "If-Match": '"trigger-1"'})
        assert response.status_code == 200, response.text
        assert response.json()["enabled"] is False
        assert response.headers["ETag"] == '"trigger-2"'
        again = await client.post(disable, headers=admin.headers)
        assert again.status_code == 200
        assert again.headers["ETag"] == '"trigger-2"'  # no change, no new version

        response = await client.post(enable, headers=admin.headers)
        assert response.json()["enabled"] is True
        assert response.headers["ETag"] == '"trigger-3"'
        assert await trigger_actions(sessionmaker, integration_id) == [
            "trigger.created",
            "trigger.disabled",
            "trigger.enabled",
        ]

    @pytest.mark.parametrize("action", ["enable", "disable"])
    async def test_failures(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        viewer: Account,
        other_admin: Account,
        integration_id: str,
        action: str,
    ) -> None:
        trigger = await created(client, admin, integration_id, "t")
        url = triggers_url(integration_id, trigger["id"], action)
        assert_problem(await client.post(url), 401)
        assert_problem(await client.post(url, headers=viewer.headers), 403)
        assert_problem(await client.post(url, headers=other_admin.headers), 404)
        stale = {**admin.headers, "If-Match": '"trigger-9"'}
        assert_problem(await client.post(url, headers=stale), 412)
        other = await new_integration(client, admin, "Other")
        wrong_parent = triggers_url(other, trigger["id"], action)
        assert_problem(await client.post(wrong_parent, headers=admin.headers), 404)


class TestDeleteTrigger:
    async def test_deletes_and_closes_the_gap(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        integration_id: str,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        a = await created(client, admin, integration_id, "a")
        for name in ("b", "c"):
            await created(client, admin, integration_id, name)
        url = triggers_url(integration_id, a["id"])
        response = await client.delete(url, headers={**admin.headers, "If-Match": '"trigger-1"'})
        assert response.status_code == 204, response.text
        assert await names_in_order(client, admin, integration_id) == ["b", "c"]
        assert_problem(await client.get(url, headers=admin.headers), 404)
        rows = await audit_rows(sessionmaker, integration_id)
        assert rows[-1].action == "trigger.deleted"
        assert rows[-1].details["name"] == "a"
        assert rows[-1].details["trigger_id"] == a["id"]
        # The name is free again, and a new trigger goes last.
        assert (await created(client, admin, integration_id, "a"))["position"] == 2

    async def test_stale_etag_answers_412(
        self, client: httpx.AsyncClient, admin: Account, integration_id: str
    ) -> None:
        trigger = await created(client, admin, integration_id, "t")
        url = triggers_url(integration_id, trigger["id"])
        response = await client.delete(url, headers={**admin.headers, "If-Match": '"trigger-0"'})
        assert_problem(response, 412)
        assert (await client.get(url, headers=admin.headers)).status_code == 200

    async def test_failures(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        viewer: Account,
        other_admin: Account,
        integration_id: str,
    ) -> None:
        trigger = await created(client, admin, integration_id, "t")
        url = triggers_url(integration_id, trigger["id"])
        assert_problem(await client.delete(url), 401)
        assert_problem(await client.delete(url, headers=viewer.headers), 403)
        assert_problem(await client.delete(url, headers=other_admin.headers), 404)
        other = await new_integration(client, admin, "Other")
        assert_problem(
            await client.delete(triggers_url(other, trigger["id"]), headers=admin.headers), 404
        )
        assert (await client.get(url, headers=admin.headers)).status_code == 200

    async def test_deleting_the_integration_deletes_its_triggers(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        integration_id: str,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        await created(client, admin, integration_id, "t")
        response = await client.delete(f"/v1/integrations/{integration_id}", headers=admin.headers)
        assert response.status_code == 204, response.text
        async with sessionmaker() as session:
            rows = await trigger_service.list_for_integration(session, uuid.UUID(integration_id))
        assert rows == []


class TestForThePipeline:
    async def test_compiled_triggers_in_position_order(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        integration_id: str,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        chats = await created(
            client, admin, integration_id, "chats", criteria={"channels": ["chat"]}
        )
        off = await created(client, admin, integration_id, "off", enabled=False)
        frustrated = await created(
            client,
            admin,
            integration_id,
            "frustrated",
            criteria={"categories": {"any": ["Frustration"]}, "scores": {"TEI": {"max": 5}}},
        )
        async with sessionmaker() as session:
            rows = await trigger_service.list_for_integration(session, uuid.UUID(integration_id))
            compiled = await trigger_service.compiled_for_integration(
                session, uuid.UUID(integration_id)
            )
        assert [row.name for row in rows] == ["chats", "off", "frustrated"]
        assert isinstance(compiled, TriggerSet)
        assert [str(trigger.id) for trigger in compiled] == [
            chats["id"],
            off["id"],
            frustrated["id"],
        ]
        assert [trigger.enabled for trigger in compiled] == [True, False, True]
        interaction = Interaction.model_validate(INTERACTION_EXAMPLE)
        match = first_match(compiled, interaction)
        assert match is not None
        assert match.name == "frustrated"
        assert match.position == 2
