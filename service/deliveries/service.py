"""The delivery log, and an admin's levers on it: retry, discard held, release held.

Decisions, so callers can rely on them:

- Everything is scoped to the caller's organization: another organization's integration or
  delivery answers 404, exactly like a missing one.
- The log lists newest first (keyset on `created_at`, `id`); `created_from` is inclusive and
  `created_to` exclusive, and `interaction_id` filters by the Creovai id.
- Retry takes only `failed` and `dead` deliveries (409 names the current status otherwise).
  The delivery becomes due now with its attempt count reset to 0; its attempt log is kept.
  It becomes `pending`, or `held` when the integration is disabled or invalid at that moment,
  exactly as a new match would (it is then released on enable). Audited `delivery.retried`.
- Discarding held deliveries is a bulk, explicit admin act (design §6): every `held`
  delivery of the integration becomes `discarded`. Audited `integration.held_discarded` with
  the count; discarding nothing writes no entry.
- Enabling releases every `held` delivery of the integration: `pending`, due now. Audited
  `integration.held_released` with the count.
- Like every service, this one only flushes. Methods that make deliveries due return their
  ids; the endpoint enqueues them after the commit (`service.deliveries.dependencies`).
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.audit.service import audit
from service.auth.dependencies import Principal
from service.delivery.planner import initial_status
from service.errors import Conflict, NotFound
from service.integrations.service import integration_service
from service.kit.pagination import PageParams, paginate
from service.models import Delivery, DeliveryAttempt, DeliveryStatus, Integration, Interaction
from service.models.base import utc_now

MAX_ATTEMPTS_SHOWN = 100
RETRYABLE = frozenset({DeliveryStatus.FAILED, DeliveryStatus.DEAD})


class NotRetryable(Conflict):
    slug = "delivery-not-retryable"


@dataclass(frozen=True, slots=True)
class DeliveryFilters:
    statuses: frozenset[DeliveryStatus] = frozenset()
    trigger_id: uuid.UUID | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    interaction_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryView:
    delivery: Delivery
    interaction_external_id: str


@dataclass(frozen=True, slots=True)
class DeliveryLog:
    view: DeliveryView
    attempts: list[DeliveryAttempt]
    attempts_recorded: int


class DeliveryService:
    async def list_for_integration(
        self,
        session: AsyncSession,
        principal: Principal,
        integration_id: uuid.UUID,
        filters: DeliveryFilters,
        page: PageParams,
    ) -> tuple[list[DeliveryView], str | None]:
        """One page of the integration's deliveries, newest first."""
        integration = await integration_service.get(session, principal, integration_id)
        statement = self._filtered(
            select(Delivery).where(Delivery.integration_id == integration.id), filters
        )
        rows, next_cursor = await paginate(
            session, statement, created_at=Delivery.created_at, row_id=Delivery.id, params=page
        )
        external_ids = await self._external_ids(session, [row.interaction_id for row in rows])
        views = [DeliveryView(row, external_ids[row.interaction_id]) for row in rows]
        return views, next_cursor

    async def get(
        self, session: AsyncSession, principal: Principal, delivery_id: uuid.UUID
    ) -> DeliveryLog:
        """The delivery with its most recent attempts, newest first."""
        view = await self._view(session, principal, delivery_id)
        attempts = await session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id == delivery_id)
            .order_by(DeliveryAttempt.started_at.desc(), DeliveryAttempt.id.desc())
            .limit(MAX_ATTEMPTS_SHOWN)
        )
        recorded = await session.scalar(
            select(func.count())
            .select_from(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id == delivery_id)
        )
        return DeliveryLog(view, list(attempts.all()), recorded or 0)

    async def retry(
        self, session: AsyncSession, principal: Principal, delivery_id: uuid.UUID
    ) -> tuple[DeliveryView, list[uuid.UUID]]:
        """Try a failed or dead delivery again; answers it and the ids to enqueue."""
        view = await self._view(session, principal, delivery_id, lock=True)
        delivery = view.delivery
        if delivery.status not in RETRYABLE:
            raise NotRetryable(
                f"Only failed or dead deliveries can be retried; this one is {delivery.status}.",
                extra={"delivery_status": delivery.status.value},
            )
        integration = await session.get(Integration, delivery.integration_id)
        assert integration is not None  # noqa: S101 (a foreign key)
        previous, previous_attempts = delivery.status, delivery.attempts
        delivery.status = initial_status(integration)
        delivery.attempts = 0
        delivery.next_attempt_at = utc_now()
        delivery.last_enqueued_at = None
        await session.flush()
        audit.record(
            session,
            organization_id=principal.organization_id,
            actor=principal,
            action="delivery.retried",
            integration_id=delivery.integration_id,
            details={
                "delivery_id": str(delivery.id),
                "interaction_id": view.interaction_external_id,
                "from_status": previous.value,
                "to_status": delivery.status.value,
                "attempts_before": previous_attempts,
            },
        )
        due = [delivery.id] if delivery.status == DeliveryStatus.PENDING else []
        return view, due

    async def discard_held(
        self, session: AsyncSession, principal: Principal, integration_id: uuid.UUID
    ) -> int:
        """Discard every held delivery of the integration; answers how many."""
        integration = await integration_service.get(session, principal, integration_id)
        result = await session.execute(
            update(Delivery)
            .where(
                Delivery.integration_id == integration.id,
                Delivery.status == DeliveryStatus.HELD,
            )
            .values(status=DeliveryStatus.DISCARDED, next_attempt_at=None, updated_at=utc_now())
            .execution_options(synchronize_session=False)
        )
        # A bulk UPDATE answers a cursor result; the count spares fetching every id.
        discarded = cast(CursorResult[Any], result).rowcount
        if discarded:
            audit.record(
                session,
                organization_id=principal.organization_id,
                actor=principal,
                action="integration.held_discarded",
                integration_id=integration.id,
                details={"discarded": discarded},
            )
        return discarded

    async def release_held(
        self, session: AsyncSession, integration: Integration, *, actor: Principal | str
    ) -> list[uuid.UUID]:
        """Make every held delivery of the (just enabled) integration due now; their ids."""
        now = utc_now()
        result = await session.execute(
            update(Delivery)
            .where(
                Delivery.integration_id == integration.id,
                Delivery.status == DeliveryStatus.HELD,
            )
            .values(
                status=DeliveryStatus.PENDING,
                next_attempt_at=now,
                last_enqueued_at=None,
                updated_at=now,
            )
            .returning(Delivery.id)
            .execution_options(synchronize_session=False)
        )
        released = list(result.scalars().all())
        if released:
            audit.record(
                session,
                organization_id=integration.organization_id,
                actor=actor,
                action="integration.held_released",
                integration_id=integration.id,
                details={"released": len(released)},
            )
        return released

    # --- Helpers ---

    @staticmethod
    def _filtered(statement: Select[Delivery], filters: DeliveryFilters) -> Select[Delivery]:
        if filters.statuses:
            statement = statement.where(Delivery.status.in_(sorted(filters.statuses)))
        if filters.trigger_id is not None:
            statement = statement.where(Delivery.trigger_id == filters.trigger_id)
        if filters.created_from is not None:
            statement = statement.where(Delivery.created_at >= filters.created_from)
        if filters.created_to is not None:
            statement = statement.where(Delivery.created_at < filters.created_to)
        if filters.interaction_id is not None:
            statement = statement.join(
                Interaction, Interaction.id == Delivery.interaction_id
            ).where(Interaction.external_id == filters.interaction_id)
        return statement

    @staticmethod
    async def _external_ids(
        session: AsyncSession, interaction_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, str]:
        if not interaction_ids:
            return {}
        rows = await session.execute(
            select(Interaction.id, Interaction.external_id).where(
                Interaction.id.in_(set(interaction_ids))
            )
        )
        return dict(rows.all())

    @staticmethod
    async def _view(
        session: AsyncSession, principal: Principal, delivery_id: uuid.UUID, *, lock: bool = False
    ) -> DeliveryView:
        statement = (
            select(Delivery, Interaction.external_id)
            .join(Interaction, Interaction.id == Delivery.interaction_id)
            .where(
                Delivery.id == delivery_id,
                Delivery.organization_id == principal.organization_id,
            )
        )
        if lock:
            # Two admins retrying at once: the second waits and then sees `pending` (409).
            statement = statement.with_for_update(of=Delivery)
        row = (await session.execute(statement)).first()
        # Another organization's delivery is indistinguishable from a missing one.
        if row is None:
            raise NotFound(f"Delivery {delivery_id} was not found.")
        return DeliveryView(*row)


delivery_service = DeliveryService()
