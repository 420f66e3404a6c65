"""Fixtures of the sender's tests: an enabled integration, a controllable clock and limiter.

The rate limiter's tests (`test_ratelimit.py`) define their own fixtures in their module.
"""

import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.delivery.batches import DeliveryBatches
from service.delivery.encoding_cache import PlanCache
from service.delivery.sender import DeliveryContext
from service.interactions.schemas import INTERACTION_EXAMPLE
from service.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Interaction,
    QualtricsProject,
)
from service.models.base import utc_now
from service.testing.fake_qualtrics import FakeQualtrics
from tests.conftest import Account, make_settings
from tests.setup.helpers import (
    add_trigger,
    connect,
    create_integration,
    create_project,
    put_catalog,
    save_fields,
)

TRIGGER_NAME = "Frustrated callers"  # what tests.setup.helpers.add_trigger names it
# The create-response call, as the fake's fault `path_pattern` sees it.
RESPONSES = r"/surveys/[^/]+/responses$"


class Clock:
    """A frozen clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@dataclass
class RecordingLimiter:
    """Implements the `RateLimiter` protocol: grants every slot at once, records everything;
    `fail_with` makes `slot()` raise instead (e.g. `RateLimitTimeout`), and `on_slot` runs
    inside the slot, just before the request (to change the world mid-send)."""

    slots: list[str] = field(default_factory=list)
    penalties: list[tuple[str, float]] = field(default_factory=list)
    fail_with: BaseException | None = None
    on_slot: Callable[[], Awaitable[None]] | None = None

    def slot(self, key: str) -> contextlib.AbstractAsyncContextManager[None]:
        return self._slot(key)

    @contextlib.asynccontextmanager
    async def _slot(self, key: str) -> AsyncIterator[None]:
        self.slots.append(key)
        if self.fail_with is not None:
            raise self.fail_with
        if self.on_slot is not None:
            await self.on_slot()
        yield

    async def penalize(self, key: str, seconds: float) -> None:
        self.penalties.append((key, seconds))


@dataclass(frozen=True)
class Ready:
    """An integration walked through steps 1-5 and enabled."""

    integration_id: uuid.UUID
    organization_id: uuid.UUID
    survey_id: str


DeliveryFactory = Callable[..., Awaitable[uuid.UUID]]


@pytest.fixture
def settings(database_url: str) -> Settings:
    # No embedded dispatcher: its sweeper would send these tests' deliveries on its own clock.
    return make_settings(database_url, embedded_workers=0)


@pytest.fixture
def clock() -> Clock:
    return Clock(utc_now().replace(microsecond=0))


@pytest.fixture
def limiter() -> RecordingLimiter:
    return RecordingLimiter()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Batches are PostgreSQL only: their SQLite combinations are deselected, not skipped."""
    kept, dropped = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        batched_on_sqlite = params is not None and (
            params.params.get("delivery_context") == "batched"
            and params.params.get("database_url") == "sqlite"
        )
        (dropped if batched_on_sqlite else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(params=["own", "batched"])
async def delivery_context(
    request: pytest.FixtureRequest,
    app: FastAPI,
    settings: Settings,
    qualtrics: FakeQualtrics,
    clock: Clock,
    limiter: RecordingLimiter,
) -> AsyncIterator[DeliveryContext]:
    """Every sender test runs twice on PostgreSQL: each run in transactions of its own, and
    with the worker's batches (claims and successes coalesced); SQLite has no batches (see
    `pytest_collection_modifyitems`)."""
    batches = DeliveryBatches(app.state.engine) if request.param == "batched" else None
    # `qualtrics` first: it wires the fake into app.state.qualtrics.
    yield DeliveryContext(
        sessionmaker=app.state.sessionmaker,
        gateway=app.state.qualtrics,
        limiter=limiter,
        settings=settings,
        clock=clock,
        rand=random.Random(20240601).random,
        plans=PlanCache(),
        batches=batches,
    )
    if batches is not None:
        await batches.aclose()


async def enable_integration(
    client: httpx.AsyncClient, admin: Account, name: str = "NPS"
) -> uuid.UUID:
    integration_id = await create_integration(client, admin, name)
    await connect(client, admin, integration_id)
    await create_project(client, admin, integration_id)
    saved = await save_fields(client, admin, integration_id)
    assert saved.status_code == 200, saved.text
    await add_trigger(client, admin, integration_id, {})
    enabled = await client.post(f"/v1/integrations/{integration_id}/enable", headers=admin.headers)
    assert enabled.status_code == 200, enabled.text
    return uuid.UUID(integration_id)


@pytest.fixture
async def ready(
    client: httpx.AsyncClient,
    admin: Account,
    qualtrics: FakeQualtrics,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Ready:
    await put_catalog(client, admin)
    integration_id = await enable_integration(client, admin)
    async with sessionmaker() as session:
        project = await session.get(QualtricsProject, integration_id)
        assert project is not None
    return Ready(integration_id, admin.organization.id, project.survey_id)


@pytest.fixture
def make_delivery(
    sessionmaker: async_sessionmaker[AsyncSession], clock: Clock, ready: Ready
) -> DeliveryFactory:
    """Store an interaction and a pending delivery of it, due now (as intake would)."""

    async def factory(
        *,
        payload: dict[str, Any] | None = None,
        integration_id: uuid.UUID | None = None,
        revision: int = 1,
        next_attempt_at: datetime | None = None,
    ) -> uuid.UUID:
        data = dict(INTERACTION_EXAMPLE if payload is None else payload)
        data.setdefault("id", f"call-{uuid.uuid4().hex[:12]}")
        async with sessionmaker.begin() as session:
            interaction = Interaction(
                organization_id=ready.organization_id,
                external_id=f"{data['id']}-{uuid.uuid4().hex[:6]}",
                payload=data,
                event_timestamp=clock(),
                started_at=clock(),
                revision=revision,
            )
            session.add(interaction)
            await session.flush()
            delivery = Delivery(
                organization_id=ready.organization_id,
                integration_id=integration_id or ready.integration_id,
                interaction_id=interaction.id,
                trigger_name=TRIGGER_NAME,
                status=DeliveryStatus.PENDING,
                next_attempt_at=clock() if next_attempt_at is None else next_attempt_at,
            )
            session.add(delivery)
            await session.flush()
            return delivery.id

    return factory


async def load_delivery(
    sessionmaker: async_sessionmaker[AsyncSession], delivery_id: uuid.UUID
) -> Delivery:
    async with sessionmaker() as session:
        delivery = await session.get(Delivery, delivery_id)
        assert delivery is not None
        return delivery


async def load_attempts(
    sessionmaker: async_sessionmaker[AsyncSession], delivery_id: uuid.UUID
) -> list[DeliveryAttempt]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id == delivery_id)
            .order_by(DeliveryAttempt.started_at, DeliveryAttempt.id)
        )
        return list(rows.all())
