"""Which integrations an interaction is delivered to, as outbox rows (design §5, §6).

For every integration of the organization that is enabled, or was enabled once and is now
disabled or invalid, the first matching enabled trigger (by position) decides: a match
becomes a delivery, `pending` when the integration is enabled and healthy, `held` otherwise.
Integrations that were never enabled are still being set up and collect nothing.
"""

import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.interactions.schemas import Interaction as InteractionPayload
from service.kit.ids import time_ordered_uuid
from service.models import (
    Delivery,
    DeliveryStatus,
    Integration,
    IntegrationHealth,
    Interaction,
    Trigger,
)
from service.triggers.compiled import CompiledTrigger
from service.triggers.matching import InteractionFacts, TriggerSet
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
    state and the (id, version) of their triggers, in one query; full trigger rows are loaded
    and compiled only for an integration whose triggers changed since the cached set was built.
    """
    rows = await session.execute(
        select(Integration.id, Integration.enabled, Integration.health, Trigger.id, Trigger.version)
        .outerjoin(Trigger, Trigger.integration_id == Integration.id)
        .where(Integration.organization_id == organization_id, _COLLECTS_MATCHES)
        .order_by(Integration.id, *_TRIGGER_ORDER)
    )

    async def load(integration_id: uuid.UUID) -> Sequence[Trigger]:
        return (await session.scalars(trigger_rows(integration_id))).all()

    return await assemble_candidates(rows, load)


_COLLECTS_MATCHES = or_(Integration.enabled.is_(True), Integration.first_enabled_at.is_not(None))


def trigger_rows(integration_id: uuid.UUID) -> Select[Trigger]:
    return select(Trigger).where(Trigger.integration_id == integration_id).order_by(*_TRIGGER_ORDER)


async def assemble_candidates(
    rows: Iterable[Sequence[Any]],
    load: Callable[[uuid.UUID], Awaitable[Sequence[Trigger]]],
) -> list[Candidate]:
    """Candidates from (integration id, enabled, health, trigger id, trigger version) rows,
    one per trigger (trigger columns None for an integration without any), ordered by
    integration and then trigger order."""
    integrations: dict[uuid.UUID, IntegrationRow] = {}
    fingerprints: dict[uuid.UUID, list[tuple[uuid.UUID, int]]] = {}
    for integration_id, enabled, health, trigger_id, version in rows:
        if integration_id not in integrations:
            integrations[integration_id] = IntegrationRow(
                integration_id, enabled, IntegrationHealth(health)
            )
            fingerprints[integration_id] = []
        if trigger_id is not None:
            fingerprints[integration_id].append((trigger_id, version))
    found = []
    for integration in integrations.values():
        triggers = trigger_cache.current(integration.id, tuple(fingerprints[integration.id]))
        if triggers is None:
            triggers = trigger_cache.get(integration.id, await load(integration.id))
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
    (integrations in `skip` already have a delivery).

    The interaction's facts are derived once, on first use, and shared by every integration's
    trigger set: the cost per integration is its index lookups, not the facts again.
    """
    facts = InteractionFacts(payload)
    for candidate in integrations:
        if skip and candidate.integration.id in skip:
            continue
        trigger = candidate.triggers.first_match(facts)
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
            id=time_ordered_uuid(),
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
