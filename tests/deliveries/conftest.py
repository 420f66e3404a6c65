"""Fixtures for the delivery log, replay and trigger dry runs: rows written straight to the DB.

`dispatcher` replaces the app's dispatcher with a recorder that also reads, in a session of its
own, the status each enqueued delivery has *committed*: a delivery enqueued before its
transaction committed would show its old status there.
"""

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.interactions.schemas import INTERACTION_EXAMPLE
from service.interactions.schemas import Interaction as InteractionPayload
from service.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Integration,
    IntegrationHealth,
    Interaction,
    Trigger,
)
from service.models.base import utc_now
from service.triggers.schemas import Criteria
from tests.conftest import Account

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


class RecordingDispatcher:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker
        self.enqueued: list[uuid.UUID] = []
        self.committed_status: dict[uuid.UUID, DeliveryStatus] = {}
        self.request_ids: list[str | None] = []

    async def enqueue(
        self, delivery_ids: Sequence[uuid.UUID], *, request_id: str | None = None
    ) -> None:
        async with self._sessionmaker() as session:
            rows = await session.execute(
                select(Delivery.id, Delivery.status).where(Delivery.id.in_(list(delivery_ids)))
            )
            self.committed_status.update(dict(rows.all()))
        self.enqueued.extend(delivery_ids)
        self.request_ids.append(request_id)


@pytest.fixture
def dispatcher(
    app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
) -> Iterator[RecordingDispatcher]:
    recorder = RecordingDispatcher(sessionmaker)
    previous = getattr(app.state, "dispatcher", None)
    app.state.dispatcher = recorder
    yield recorder
    app.state.dispatcher = previous


@dataclass
class Rows:
    """Writes rows directly, each in its own committed transaction."""

    sessionmaker: async_sessionmaker[AsyncSession]

    async def _save(self, row: Any) -> Any:
        async with self.sessionmaker.begin() as session:
            session.add(row)
        return row

    async def integration(
        self,
        account: Account,
        *,
        name: str | None = None,
        enabled: bool = True,
        health: IntegrationHealth = IntegrationHealth.OK,
    ) -> Integration:
        row: Integration = await self._save(
            Integration(
                id=uuid.uuid4(),
                organization_id=account.organization.id,
                name=name or f"NPS {uuid.uuid4().hex[:6]}",
                enabled=enabled,
                health=health,
                first_enabled_at=utc_now() if enabled else None,
            )
        )
        return row

    async def trigger(
        self,
        integration: Integration,
        criteria: dict[str, Any],
        *,
        name: str | None = None,
        position: int = 0,
        enabled: bool = True,
        trigger_id: uuid.UUID | None = None,
    ) -> Trigger:
        row: Trigger = await self._save(
            Trigger(
                id=trigger_id or uuid.uuid4(),
                integration_id=integration.id,
                name=name or f"Trigger {position}",
                position=position,
                enabled=enabled,
                criteria=Criteria.model_validate(criteria).stored(),
            )
        )
        return row

    async def interaction(
        self, account: Account, external_id: str, started_at: datetime, **overrides: Any
    ) -> Interaction:
        payload = InteractionPayload.model_validate(
            {
                **INTERACTION_EXAMPLE,
                "id": external_id,
                "started_at": started_at.isoformat(),
                "ended_at": None,
                **overrides,
            }
        )
        row: Interaction = await self._save(
            Interaction(
                id=uuid.uuid4(),
                organization_id=account.organization.id,
                external_id=external_id,
                payload=payload.model_dump(mode="json"),
                event_timestamp=utc_now(),
                started_at=payload.started_at,
            )
        )
        return row

    async def delivery(
        self,
        integration: Integration,
        interaction: Interaction,
        status: DeliveryStatus = DeliveryStatus.PENDING,
        *,
        trigger: Trigger | None = None,
        created_at: datetime | None = None,
        **fields: Any,
    ) -> Delivery:
        row: Delivery = await self._save(
            Delivery(
                id=uuid.uuid4(),
                organization_id=integration.organization_id,
                integration_id=integration.id,
                interaction_id=interaction.id,
                trigger_id=trigger.id if trigger else None,
                trigger_name=trigger.name if trigger else "Everyone",
                status=status,
                created_at=created_at or utc_now(),
                **fields,
            )
        )
        return row

    async def attempts(self, delivery: Delivery, count: int) -> list[DeliveryAttempt]:
        rows = [
            DeliveryAttempt(
                id=uuid.uuid4(),
                delivery_id=delivery.id,
                started_at=T0 + timedelta(minutes=index),
                duration_ms=100 + index,
                outcome="retry",
                status_code=503,
                error_class="QualtricsServerError",
                response_body=f"attempt {index}",
                counted=index % 2 == 0,
            )
            for index in range(count)
        ]
        async with self.sessionmaker.begin() as session:
            session.add_all(rows)
        return rows

    async def deliveries(self, integration: Integration) -> list[Delivery]:
        async with self.sessionmaker() as session:
            found = await session.scalars(
                select(Delivery).where(Delivery.integration_id == integration.id)
            )
            return list(found.all())

    async def reload(self, delivery: Delivery) -> Delivery:
        async with self.sessionmaker() as session:
            row = await session.get(Delivery, delivery.id)
            assert row is not None
            return row


@pytest.fixture
def rows(sessionmaker: async_sessionmaker[AsyncSession]) -> Rows:
    return Rows(sessionmaker)
