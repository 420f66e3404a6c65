"""Webhook intake: verify, dedupe, store the interaction and its deliveries in one transaction.

The answer is 202 only after the interaction and its deliveries are committed (the request
session commits before the response is sent); the queue is told afterwards, and if that fails
the sweeper finds the rows anyway (transactional outbox, reliability-facts §3.5).

Duplicates are decided by the database, not by a read-then-write race: the webhook receipt
and the interaction are inserted with ON CONFLICT DO NOTHING, so of twenty concurrent copies
of one webhook exactly one inserts and the others see a conflict and answer `duplicate`.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import Executable, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from service.catalog.service import catalog as catalog_service
from service.delivery.planner import candidates, plan
from service.errors import BadRequest, FieldError, UnprocessableEntity
from service.interactions.schemas import Interaction as InteractionPayload
from service.kit.crypto import SecretBox
from service.models import (
    Delivery,
    DeliveryStatus,
    Interaction,
    Organization,
    WebhookReceipt,
    WebhookSecret,
)
from service.models.base import utc_now
from service.webhooks.schemas import CatalogEvent, InteractionEvent, event_adapter
from service.webhooks.verification import SignatureRejected, verify_signature

WEBHOOK_ACTOR = "webhook"


IntakeStatus = Literal["accepted", "duplicate", "stale", "catalog_updated"]


@dataclass(frozen=True, slots=True)
class IntakeResult:
    status: IntakeStatus
    deliveries: list[Delivery]

    @property
    def pending_ids(self) -> list[uuid.UUID]:
        return [d.id for d in self.deliveries if d.status == DeliveryStatus.PENDING]


def _insert_unless_present(session: AsyncSession, model: type[Any], **values: Any) -> Executable:
    """INSERT ... ON CONFLICT DO NOTHING, in the session's dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model).values(**values).on_conflict_do_nothing()
    return sqlite.insert(model).values(**values).on_conflict_do_nothing()


def _parse(body: bytes) -> InteractionEvent | CatalogEvent:
    try:
        return event_adapter.validate_json(body)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise BadRequest("The request body is not valid JSON.") from None
        errors = [
            FieldError(
                pointer="/body/" + "/".join(str(part) for part in error["loc"]),
                detail=error["msg"],
            )
            for error in exc.errors(include_input=False, include_url=False)[:50]
        ]
        raise UnprocessableEntity(
            f"The event has {len(exc.errors())} invalid field(s).", errors=errors
        ) from None


class IntakeService:
    async def active_secrets(
        self, session: AsyncSession, box: SecretBox, organization_id: uuid.UUID
    ) -> list[str]:
        now = utc_now()
        rows = await session.scalars(
            select(WebhookSecret)
            .where(WebhookSecret.organization_id == organization_id)
            .order_by(WebhookSecret.created_at.desc())
        )
        return [
            box.decrypt(row.secret_encrypted)
            for row in rows
            if row.expires_at is None or row.expires_at > now
        ]

    async def receive(
        self,
        session: AsyncSession,
        box: SecretBox,
        organization_id: uuid.UUID,
        body: bytes,
        headers: dict[str, str],
    ) -> IntakeResult:
        if await session.get(Organization, organization_id) is None:
            raise SignatureRejected()
        secrets = await self.active_secrets(session, box, organization_id)
        webhook_id = verify_signature(body, headers, secrets)
        event = _parse(body)

        receipt = await session.execute(
            _insert_unless_present(
                session,
                WebhookReceipt,
                organization_id=organization_id,
                webhook_id=webhook_id,
                event_type=event.type,
                received_at=utc_now(),
            )
        )
        if receipt.rowcount == 0:  # type: ignore[attr-defined]
            return IntakeResult("duplicate", [])

        if isinstance(event, CatalogEvent):
            await catalog_service.replace(
                session,
                organization_id=organization_id,
                document=event.data,
                actor=WEBHOOK_ACTOR,
            )
            return IntakeResult("catalog_updated", [])
        if event.type == "interaction.updated":
            return await self._update(session, organization_id, event)
        return await self._complete(session, organization_id, event)

    async def _complete(
        self, session: AsyncSession, organization_id: uuid.UUID, event: InteractionEvent
    ) -> IntakeResult:
        interaction = await self._insert_interaction(session, organization_id, event)
        if interaction is None:
            return IntakeResult("duplicate", [])
        return await self._plan(session, interaction, event.data)

    async def _insert_interaction(
        self, session: AsyncSession, organization_id: uuid.UUID, event: InteractionEvent
    ) -> Interaction | None:
        """The new interaction row, or None when this id is already stored."""
        values = _interaction_values(event)
        row_id = uuid.uuid4()
        now = utc_now()
        inserted = await session.execute(
            _insert_unless_present(
                session,
                Interaction,
                id=row_id,
                organization_id=organization_id,
                revision=1,
                created_at=now,
                updated_at=now,
                **values,
            )
        )
        if inserted.rowcount == 0:  # type: ignore[attr-defined]
            return None
        return await session.get_one(Interaction, row_id)

    async def _plan(
        self,
        session: AsyncSession,
        interaction: Interaction,
        payload: InteractionPayload,
        *,
        skip: frozenset[uuid.UUID] = frozenset(),
    ) -> IntakeResult:
        integrations = await candidates(session, interaction.organization_id)
        deliveries = plan(interaction, payload, integrations, skip=skip)
        session.add_all(deliveries)
        await session.flush()
        return IntakeResult("accepted", deliveries)

    async def _update(
        self, session: AsyncSession, organization_id: uuid.UUID, event: InteractionEvent
    ) -> IntakeResult:
        stored = await session.scalar(
            select(Interaction)
            .where(
                Interaction.organization_id == organization_id,
                Interaction.external_id == event.data.id,
            )
            .with_for_update()
        )
        if stored is None:
            # The completion never arrived (or arrives later): this version is the first.
            return await self._complete(session, organization_id, event)
        if event.timestamp <= stored.event_timestamp:
            return IntakeResult("stale", [])

        values = _interaction_values(event)
        stored.payload = values["payload"]
        stored.event_timestamp = values["event_timestamp"]
        stored.started_at = values["started_at"]
        stored.revision += 1
        existing = (
            await session.scalars(select(Delivery).where(Delivery.interaction_id == stored.id))
        ).all()
        for delivery in existing:
            if delivery.status == DeliveryStatus.DELIVERED:
                delivery.newer_revision_after_delivery = True
            elif delivery.status in (DeliveryStatus.PENDING, DeliveryStatus.HELD):
                # The sender loads the interaction when it sends: the newest version goes.
                delivery.interaction_revision = stored.revision
        return await self._plan(
            session,
            stored,
            event.data,
            skip=frozenset(delivery.integration_id for delivery in existing),
        )


def _interaction_values(event: InteractionEvent) -> dict[str, Any]:
    started_at: datetime = event.data.started_at
    return {
        "external_id": event.data.id,
        "payload": event.data.model_dump(mode="json"),
        "event_timestamp": event.timestamp,
        "started_at": started_at,
    }


intake_service = IntakeService()
