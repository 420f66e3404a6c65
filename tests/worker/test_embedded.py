"""The embedded default (`service run`: SQLite, no Redis): `create_app` delivers in process."""

import uuid
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.delivery.queue import InProcessDispatcher
from service.main import create_app
from service.models import Delivery
from service.models.base import utc_now
from tests.conftest import Account, make_settings
from tests.webhooks.helpers import event, interaction, organization_secret, post_event
from tests.worker.conftest import (
    enabled_integration,
    eventually,
    plan_deliveries,
    responses_by_key,
    wait_until_delivered,
)


@pytest.fixture(scope="session")
def database_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
def settings(database_url: str, fake_qualtrics_url: str) -> Settings:
    return make_settings(
        database_url,
        qualtrics_base_url=fake_qualtrics_url + "/{subdomain}",
        embedded_workers=4,
        sweeper_interval=timedelta(milliseconds=200),
    )


class TestEmbeddedDispatcher:
    async def test_a_webhook_is_delivered_in_process(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
        fake_control: httpx.AsyncClient,
    ) -> None:
        assert app.state.settings.is_embedded
        assert isinstance(app.state.dispatcher, InProcessDispatcher)
        integration = await enabled_integration(client, admin)
        secret = await organization_secret(sessionmaker, admin.organization.id)

        accepted = await post_event(
            client, admin.organization.id, secret, event(interaction(id="call-embedded-1"))
        )

        assert accepted.status_code == 202, accepted.text
        by_key = await _wait_for_responses(fake_control, integration.survey_id, count=1)
        delivery_id = uuid.UUID(next(iter(by_key)))  # the Idempotency-Key is the delivery id
        await wait_until_delivered(sessionmaker, [delivery_id], within=10)

    async def test_many_deliveries_each_once(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
        fake_control: httpx.AsyncClient,
    ) -> None:
        integration = await enabled_integration(client, admin)
        ids = await plan_deliveries(sessionmaker, integration.organization_id, 30)

        await app.state.dispatcher.enqueue(ids)
        await app.state.dispatcher.enqueue(ids)  # again: queued ones are not queued twice

        await wait_until_delivered(sessionmaker, ids, within=20)
        by_key = await responses_by_key(fake_control, integration.survey_id)
        assert sorted(by_key) == sorted(map(str, ids))
        assert set(by_key.values()) == {1}

    async def test_a_restart_sends_what_the_last_run_had_queued(
        self,
        app: FastAPI,
        settings: Settings,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
        fake_control: httpx.AsyncClient,
    ) -> None:
        integration = await enabled_integration(client, admin)
        ids = await plan_deliveries(sessionmaker, integration.organization_id, 5)
        # Enqueued a moment ago by a process that then stopped: only the database remembers.
        async with sessionmaker.begin() as session:
            await session.execute(
                update(Delivery).where(Delivery.id.in_(ids)).values(last_enqueued_at=utc_now())
            )

        restarted = create_app(settings)
        async with restarted.router.lifespan_context(restarted):
            # Its first sweep takes them, recent enqueue or not; the periodic ones would not.
            await wait_until_delivered(sessionmaker, ids, within=20)
        by_key = await responses_by_key(fake_control, integration.survey_id)
        assert sorted(by_key) == sorted(map(str, ids))


async def _wait_for_responses(
    control: httpx.AsyncClient, survey_id: str, *, count: int
) -> dict[str, int]:
    by_key: dict[str, int] = {}

    async def arrived() -> bool:
        nonlocal by_key
        by_key = await responses_by_key(control, survey_id)
        return len(by_key) >= count

    await eventually(arrived, within=10)
    return by_key
