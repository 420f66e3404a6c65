"""Which integrations an interaction is delivered to, as outbox rows (design §5, §6).

For every integration of the organization that is enabled, or was enabled once and is now
disabled or invalid, the first matching enabled trigger (by position) decides: a match
becomes a delivery, `pending` when the integration is enabled and healthy, `held` otherwise.
Integrations that were never enabled are still being set up and collect nothing.
"""

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

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

Fingerprint = tuple[tuple[uuid.UUID, int], ...]


class TriggerCache:
    """Compiled trigger sets per integration, rebuilt only when a trigger row changed.

    Rows are read on every call (one cheap query); compiling and indexing, which costs far
    more, happens only when their (id, version) fingerprint differs from the cached one.
    """

    def __init__(self) -> None:
        self._sets: dict[uuid.UUID, tuple[Fingerprint, TriggerSet]] = {}

    def current(self, integration_id: uuid.UUID, fingerprint: Fingerprint) -> TriggerSet | None:
        """The cached set when its rows are still these (id, version) pairs, else None."""
        cached = self._sets.get(integration_id)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        return None

    def get(self, integration_id: uuid.UUID, rows: Sequence[Trigger]) -> TriggerSet:
        fingerprint = tuple((row.id, row.version) for row in rows)
        cached = self._sets.get(integration_id)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        triggers = TriggerSet(compile_row(row) for row in rows)
        self._sets[integration_id] = (fingerprint, triggers)
        return triggers


trigger_cache = TriggerCache()


class IntegrationState(Protocol):
    """What planning reads of an integration (an ORM row, or the light row `candidates` reads)."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def enabled(self) -> bool: ...

    @property
    def health(self) -> IntegrationHealth: ...


@dataclass(frozen=True, slots=True)
class IntegrationRow:
    id: uuid.UUID
    enabled: bool
    health: IntegrationHealth


@dataclass(frozen=True, slots=True)
class Candidate:
    integration: IntegrationState
    triggers: TriggerSet


# Trigger rows in the order that decides the first match.
_TRIGGER_ORDER = (Trigger.position, Trigger.created_at, Trigger.id)


async def candidates(session: AsyncSession, organization_id: uuid.UUID) -> list[Candidate]:
    """The organization's integrations that collect matches, with their compiled triggers.

    Intake asks this once per batch, so it reads columns, not ORM objects: the integrations'
    state, and the (id, version) of their triggers; full trigger rows are loaded and compiled
    only for an integration whose triggers changed since the cached set was built.
    """
    integrations = [
        IntegrationRow(row.id, row.enabled, row.health)
        for row in await session.execute(
            select(Integration.id, Integration.enabled, Integration.health).where(
                Integration.organization_id == organization_id,
                or_(Integration.enabled.is_(True), Integration.first_enabled_at.is_not(None)),
            )
        )
    ]
    if not integrations:
        return []
    fingerprints: dict[uuid.UUID, list[tuple[uuid.UUID, int]]] = {
        integration.id: [] for integration in integrations
    }
    for row in await session.execute(
        select(Trigger.integration_id, Trigger.id, Trigger.version)
        .where(Trigger.integration_id.in_(list(fingerprints)))
        .order_by(Trigger.integration_id, *_TRIGGER_ORDER)
    ):
        fingerprints[row.integration_id].append((row.id, row.version))
    found = []
    for integration in integrations:
        triggers = trigger_cache.current(integration.id, tuple(fingerprints[integration.id]))
        if triggers is None:
            rows = await session.scalars(
                select(Trigger)
                .where(Trigger.integration_id == integration.id)
                .order_by(*_TRIGGER_ORDER)
            )
            triggers = trigger_cache.get(integration.id, rows.all())
        found.append(Candidate(integration, triggers))
    return found


def initial_status(integration: IntegrationState) -> DeliveryStatus:
    healthy = integration.enabled and integration.health == IntegrationHealth.OK
    return DeliveryStatus.PENDING if healthy else DeliveryStatus.HELD


def matches(
    payload: InteractionPayload,
    integrations: Iterable[Candidate],
    *,
    skip: frozenset[uuid.UUID] = frozenset(),
) -> Iterator[tuple[IntegrationState, CompiledTrigger]]:
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
