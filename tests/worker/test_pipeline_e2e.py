"""The whole pipeline, as deployed: signed webhooks → PostgreSQL outbox → Redis/arq →
`service worker` process → the fake Qualtrics over HTTP.

Every matching interaction lands exactly once with the right value for every format of the
matrix; non-matching ones create nothing.
"""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.models import Delivery, DeliveryStatus
from tests.conftest import Account, make_settings
from tests.setup.helpers import (
    SELECTION,
    add_trigger,
    connect,
    create_integration,
    create_project,
    put_catalog,
    save_fields,
)
from tests.webhooks.helpers import event, interaction, organization_secret, post_event
from tests.worker.conftest import Workers, eventually, responses_by_key


@pytest.fixture
def settings(database_url: str, fake_qualtrics_url: str, redis_url: str) -> Settings:
    # The api enqueues to the same Redis the worker process consumes.
    return make_settings(
        database_url,
        qualtrics_base_url=fake_qualtrics_url + "/{subdomain}",
        redis_url=redis_url,
        embedded_workers=0,
    )


# What each field of SELECTION must carry for `matching_interaction()`, worked out by hand
# from design §4 (TEI 4.6 on 0-10 is "Average", the second band: choice 2).
EXPECTED_BY_POSITION: list[Any] = [
    "Sam Agent",  # agent, TE question: QIDn_TEXT
    "2026-11-26",  # date, in the +01:00 offset the start carries
    "alex@example.com",  # customer email
    1,  # Frustration occurred, boolean question: choice 1 = Yes
    0,  # Transfer did not occur, numeric
    [1],  # Effort group question: Frustration is its first member
    "Frustration",  # Effort as a multi-value text set
    2,  # TEI band question: Average
    "4.6",  # TEI range
    "7.2",  # AIS range, TE question
    "EMEA",  # custom metadata
    "Billing",  # the Team call group
]


def matching_interaction() -> dict[str, Any]:
    return interaction(
        customer={"id": "cust-42", "name": "Alex Customer", "email": "alex@example.com"}
    )


async def test_signed_interactions_land_once_with_every_format_right(
    client: httpx.AsyncClient,
    admin: Account,
    workers: Workers,
    fake_control: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await put_catalog(client, admin)
    integration_id = await create_integration(client, admin)
    await connect(client, admin, integration_id)
    survey_id = str((await create_project(client, admin, integration_id))["survey_id"])
    assert (await save_fields(client, admin, integration_id)).status_code == 200
    await add_trigger(
        client,
        admin,
        integration_id,
        {"channels": ["call"], "categories": {"any": ["Frustration"]}},
    )
    assert (
        await client.post(f"/v1/integrations/{integration_id}/enable", headers=admin.headers)
    ).status_code == 200
    workers.start()

    secret = await organization_secret(sessionmaker, admin.organization.id)
    matching = [matching_interaction() for _ in range(12)]
    not_matching = [
        interaction(channel="chat"),
        interaction(categories=[{"name": "Thanks"}]),
        interaction(categories=[]),
    ]
    for data in matching + not_matching:
        answer = await post_event(client, admin.organization.id, secret, event(data))
        assert answer.status_code == 202, answer.text
    # A retried webhook (same interaction, new webhook id) adds nothing.
    repeat = await post_event(client, admin.organization.id, secret, event(matching[0]))
    assert repeat.json()["status"] == "duplicate"

    async def all_landed() -> bool:
        """Stored in Qualtrics and recorded as delivered (the record follows the answer)."""
        if sum((await responses_by_key(fake_control, survey_id)).values()) < len(matching):
            return False
        async with sessionmaker() as session:
            delivered = await session.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.status == DeliveryStatus.DELIVERED)
            )
        return delivered == len(matching)

    await eventually(all_landed, within=30, explain=lambda: workers.started[0].log())

    async with sessionmaker() as session:
        deliveries = (await session.scalars(select(Delivery))).all()
    assert len(deliveries) == len(matching)
    by_key = await responses_by_key(fake_control, survey_id)
    assert sorted(by_key) == sorted(str(delivery.id) for delivery in deliveries)
    assert set(by_key.values()) == {1}

    # Where each field lands, from the preview of the saved selection.
    preview = await client.post(
        f"/v1/integrations/{integration_id}/preview",
        json={"interaction": matching[0]},
        headers=admin.headers,
    )
    keys = [field["target"]["values_key"] for field in preview.json()["fields"]]
    assert len(keys) == len(SELECTION) == len(EXPECTED_BY_POSITION)

    stored = (await fake_control.get(f"/_fake/surveys/{survey_id}/responses")).json()
    by_interaction = {response["values"]["creovai_interaction_id"]: response for response in stored}
    assert sorted(by_interaction) == sorted(data["id"] for data in matching)
    for data in matching:
        values = by_interaction[data["id"]]["values"]
        for key, expected in zip(keys, EXPECTED_BY_POSITION, strict=True):
            assert values[key] == expected, (key, values[key], expected)
        assert values["creovai_trigger"] == "Frustrated callers"
        assert values["startDate"] == "2026-11-26T08:15:00Z"
        assert values["endDate"] == "2026-11-26T08:21:30Z"
        assert values["finished"] == 1
        assert values["userLanguage"] == "EN"
        assert None not in values.values()
    started = datetime.now(UTC) - timedelta(minutes=5)
    assert all(delivery.delivered_at and delivery.delivered_at > started for delivery in deliveries)
    assert all(isinstance(uuid.UUID(key), uuid.UUID) for key in by_key)
