"""Which integrations an interaction is delivered to, as outbox rows (design §5, §6).

For every integration of the organization that is enabled, or was enabled once and is now
disabled or invalid, the first matching enabled trigger (by position) decides: a match
becomes a delivery, `pending` when the integration is enabled and healthy, `held` otherwise.
Integrations that were never enabled are still being set up and collect nothing.
"""

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.interactions.schemas import Interaction as InteractionPayload
from service.models import (
    Delivery,
    DeliveryStatus,
    Integration,
    IntegrationHealth,
    Interaction,
    Trigger,
)
from service.triggers.compiled import CompiledTrigger
from service.triggers.matching import TriggerSet
from service.triggers.service import compile_row


class TriggerCache:
    """Compiled trigger sets per integration, rebuilt only when a trigger row changed.

    Rows are read on every call (one cheap query); compiling and indexing, which costs far
    more, happens only when their (id, version) fingerprint differs from the cached one.
    """

    def __init__(self) -> None:
        self._sets: dict[uuid.UUID, tuple[tuple[tuple[uuid.UUID, int], ...], TriggerSet]] = {}

    def get(self, integration_id: uuid.UUID, rows: Sequence[Trigger]) -> TriggerSet:
        fingerprint = tuple((row.id, row.version) for row in rows)
        cached = self._sets.get(integration_id)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        triggers = TriggerSet(compile_row(row) for row in rows)
        self._sets[integration_id] = (fingerprint, triggers)
        return triggers


trigger_cache = TriggerCache()


@dataclass(frozen=True, slots=True)
class Candidate:
    integration: Integration
    triggers: TriggerSet


async def candidates(session: AsyncSession, organization_id: uuid.UUID) -> list[Candidate]:
    """The organization's integrations that collect matches, with their compiled triggers."""
    integrations = (
        await session.scalars(
            select(Integration).where(
                Integration.organization_id == organization_id,
                or_(Integration.enabled.is_(True), Integration.first_enabled_at.is_not(None)),
            )
        )
    ).all()
    if not integrations:
        return []
    rows = (
        await session.scalars(
            select(Trigger)
            .where(Trigger.integration_id.in_([integration.id for integration in integrations]))
            .order_by(Trigger.integration_id, Trigger.position, Trigger.created_at, Trigger.id)
        )
    ).all()
    by_integration: dict[uuid.UUID, list[Trigger]] = {}
    for row in rows:
        by_integration.setdefault(row.integration_id, []).append(row)
    return [
        Candidate(
            integration, trigger_cache.get(integration.id, by_integration.get(integration.id, []))
        )
        for integration in integrations
    ]


def initial_status(integration: Integration) -> DeliveryStatus:
    healthy = integration.enabled and integration.health == IntegrationHealth.OK
    return DeliveryStatus.PENDING if healthy else DeliveryStatus.HELD


def matches(
    payload: InteractionPayload,
    integrations: Iterable[Candidate],
    *,
    skip: frozenset[uuid.UUID] = frozenset(),
) -> Iterator[tuple[Integration, CompiledTrigger]]:
    """Each integration the interaction goes to, with the trigger that decided it
    (integrations in `skip` already have a delivery)."""
    for candidate in integrations:
        if candidate.integration.id in skip:
            continue
        trigger = candidate.triggers.first_match(payload)
        if trigger is not None:
            yield candidate.integration, trigger


def plan(
    interaction: Interaction,
    payload: InteractionPayload,
    integrations: Iterable[Candidate],
    *,
    skip: frozenset[uuid.UUID] = frozenset(),
) -> list[Delivery]:
    """New deliveries for the interaction, as ORM rows to add to the session."""
    return [
        Delivery(
            id=uuid.uuid4(),
            organization_id=interaction.organization_id,
            integration_id=integration.id,
            interaction_id=interaction.id,
            trigger_id=trigger.id,
            trigger_name=trigger.name,
            status=initial_status(integration),
            interaction_revision=interaction.revision,
        )
        for integration, trigger in matches(payload, integrations, skip=skip)
    ]
