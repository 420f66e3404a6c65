"""Stored interactions through triggers after the fact: replay, and a trigger's dry run.

Replay decisions (design §5, §6):

- The window is over the interactions' `started_at`: `from` inclusive, `to` exclusive, at
  most 31 days (checked by `ReplayRequest`).
- Only interactions that have no delivery for this integration are evaluated, through the
  integration's current enabled triggers, the first match by position recorded, exactly as
  the webhook intake plans (`service.delivery.planner.plan`). An interaction is delivered once
  per integration, so replaying a window twice creates nothing new.
- New deliveries are `pending` when the integration is enabled and healthy, otherwise `held`
  (released on enable), as at intake; replaying into a never-enabled integration therefore
  queues a backfill that starts when it is first enabled.
- Bounded work: more than `MAX_REPLAY_INTERACTIONS` candidates is refused up front (422), and
  a real run refuses to create more than `MAX_REPLAY_DELIVERIES` (422, nothing created); a dry
  run reports `exceeds_limit` instead. Rows are read in keyset chunks of `CHUNK_SIZE`, and
  deliveries flushed per chunk, so memory stays flat whatever the window holds.
- A real run locks the integration row, so two replays of one integration run one after the
  other. A delivery the intake creates at the same moment for the same interaction makes the
  run fail with 409 and roll back whole; running it again skips that interaction.
- Real runs are audited as `integration.replayed` with the window and the counts.

The trigger dry run evaluates one trigger, enabled or not, over the organization's most recent
interactions (by start time, which the `(organization_id, started_at)` index serves); its
`sample_rate` applies, since it decides what the trigger would select.
"""

import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.audit.service import audit
from service.auth.dependencies import Principal
from service.deliveries.schemas import (
    REPLAY_SAMPLE_SIZE,
    TRIGGER_TEST_MATCHES_SHOWN,
    ReplayRequest,
)
from service.delivery.planner import Candidate, initial_status, plan, trigger_cache
from service.errors import UnprocessableEntity
from service.integrations.service import integration_service
from service.interactions.schemas import Interaction as InteractionPayload
from service.models import Delivery, DeliveryStatus, Integration, Interaction
from service.triggers.service import compile_row, trigger_service

logger = logging.getLogger(__name__)

CHUNK_SIZE = 500
MAX_REPLAY_INTERACTIONS = 100_000
MAX_REPLAY_DELIVERIES = 10_000


class ReplayTooLarge(UnprocessableEntity):
    slug = "replay-too-large"


@dataclass(slots=True)
class ReplayOutcome:
    dry_run: bool
    status: DeliveryStatus | None
    evaluated: int = 0
    matched: int = 0
    created: int = 0
    sample: list[str] = field(default_factory=list)

    @property
    def exceeds_limit(self) -> bool:
        return self.matched > MAX_REPLAY_DELIVERIES


@dataclass(frozen=True, slots=True)
class TriggerTestMatch:
    interaction_id: str
    started_at: datetime


@dataclass(frozen=True, slots=True)
class TriggerTestOutcome:
    evaluated: int
    matched: int
    matches: list[TriggerTestMatch]


class ReplayService:
    async def replay(
        self,
        session: AsyncSession,
        principal: Principal,
        integration_id: uuid.UUID,
        request: ReplayRequest,
    ) -> tuple[ReplayOutcome, list[uuid.UUID]]:
        """Evaluate the window's undelivered interactions; answers the counts and due ids."""
        integration = await integration_service.get(session, principal, integration_id)
        if not request.dry_run:
            await session.execute(
                select(Integration.id).where(Integration.id == integration.id).with_for_update()
            )
        window = self._undelivered(integration, request.from_, request.to)
        candidates = await session.scalar(
            select(func.count()).select_from(Interaction).where(*window)
        )
        if candidates and candidates > MAX_REPLAY_INTERACTIONS:
            raise ReplayTooLarge(
                f"The window holds {candidates} interactions without a delivery; one replay "
                f"evaluates at most {MAX_REPLAY_INTERACTIONS}. Narrow the window."
            )
        triggers = trigger_cache.get(
            integration.id, await trigger_service.list_for_integration(session, integration.id)
        )
        candidate = [Candidate(integration, triggers)]
        status = initial_status(integration)
        outcome = ReplayOutcome(dry_run=request.dry_run, status=None if request.dry_run else status)
        due: list[uuid.UUID] = []

        async for chunk in self._chunks(session, window):
            for row in chunk:
                outcome.evaluated += 1
                payload = _payload(row.external_id, row.payload)
                planned = [] if payload is None else plan(row, payload, candidate)
                if not planned:
                    continue
                outcome.matched += 1
                if len(outcome.sample) < REPLAY_SAMPLE_SIZE:
                    outcome.sample.append(row.external_id)
                if request.dry_run:
                    continue
                if outcome.exceeds_limit:
                    raise ReplayTooLarge(
                        f"The window has more than {MAX_REPLAY_DELIVERIES} matching "
                        "interactions; one replay creates at most that many. Narrow the window."
                    )
                session.add_all(planned)
                outcome.created += len(planned)
                due.extend(d.id for d in planned if d.status == DeliveryStatus.PENDING)
            if not request.dry_run:
                await session.flush()

        if not request.dry_run:
            audit.record(
                session,
                organization_id=principal.organization_id,
                actor=principal,
                action="integration.replayed",
                integration_id=integration.id,
                details={
                    "from": request.from_.isoformat(),
                    "to": request.to.isoformat(),
                    "evaluated": outcome.evaluated,
                    "matched": outcome.matched,
                    "created": outcome.created,
                    "status": status.value,
                },
            )
        return outcome, due

    async def dry_run_trigger(
        self,
        session: AsyncSession,
        principal: Principal,
        integration_id: uuid.UUID,
        trigger_id: uuid.UUID,
        *,
        limit: int,
    ) -> TriggerTestOutcome:
        """Which of the most recent `limit` interactions the trigger selects (a dry run)."""
        trigger = await trigger_service.get(session, principal, integration_id, trigger_id)
        compiled = compile_row(trigger)
        rows = await session.execute(
            select(Interaction.external_id, Interaction.started_at, Interaction.payload)
            .where(Interaction.organization_id == principal.organization_id)
            .order_by(Interaction.started_at.desc(), Interaction.id.desc())
            .limit(limit)
        )
        evaluated, matched = 0, 0
        matches: list[TriggerTestMatch] = []
        for external_id, started_at, stored in rows:
            evaluated += 1
            payload = _payload(external_id, stored)
            if payload is None or not compiled.matches(payload):
                continue
            matched += 1
            if len(matches) < TRIGGER_TEST_MATCHES_SHOWN:
                matches.append(TriggerTestMatch(external_id, started_at))
        return TriggerTestOutcome(evaluated, matched, matches)

    # --- Helpers ---

    @staticmethod
    def _undelivered(
        integration: Integration, start: datetime, end: datetime
    ) -> list[ColumnElement[bool]]:
        has_delivery = (
            select(Delivery.id)
            .where(
                Delivery.integration_id == integration.id,
                Delivery.interaction_id == Interaction.id,
            )
            .exists()
        )
        return [
            Interaction.organization_id == integration.organization_id,
            Interaction.started_at >= start,
            Interaction.started_at < end,
            ~has_delivery,
        ]

    @staticmethod
    async def _chunks(
        session: AsyncSession, window: Sequence[ColumnElement[bool]]
    ) -> AsyncIterator[Sequence[Interaction]]:
        """The window's rows in (started_at, id) order, `CHUNK_SIZE` at a time (keyset)."""
        after: tuple[datetime, uuid.UUID] | None = None
        while True:
            statement = select(Interaction).where(*window)
            if after is not None:
                statement = statement.where(
                    or_(
                        Interaction.started_at > after[0],
                        and_(Interaction.started_at == after[0], Interaction.id > after[1]),
                    )
                )
            chunk = (
                await session.scalars(
                    statement.order_by(Interaction.started_at, Interaction.id).limit(CHUNK_SIZE)
                )
            ).all()
            if not chunk:
                return
            yield chunk
            if len(chunk) < CHUNK_SIZE:
                return
            after = (chunk[-1].started_at, chunk[-1].id)


def _payload(external_id: str, stored: dict[str, Any]) -> InteractionPayload | None:
    """The stored interaction as the triggers read it; None (logged) if it no longer validates."""
    try:
        return InteractionPayload.model_validate(stored)
    except ValidationError as error:
        logger.warning(
            "stored interaction %s no longer validates (%d errors); skipped",
            external_id,
            error.error_count(),
        )
        return None


replay_service = ReplayService()
