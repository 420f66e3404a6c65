"""Webhook intake: verify, dedupe, store the interaction and its deliveries, then answer.

The answer is 202 only after the interaction and its deliveries are committed; the queue is
told afterwards, and if that fails the sweeper finds the rows anyway (transactional outbox,
reliability-facts §3.5). Completed interactions, nearly all of the traffic, are committed in
batches shared by concurrent requests (service.webhooks.batching); updates and catalogue
events, which read before they write, keep a transaction of their own (the request's session).

Duplicates are decided by the database, not by a read-then-write race: the webhook receipt
and the interaction are inserted with ON CONFLICT DO NOTHING, so of twenty concurrent copies
of one webhook exactly one inserts and the others see a conflict and answer `duplicate`.
"""

import uuid
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Executable, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.catalog.service import catalog as catalog_service
from service.delivery.planner import candidates, plan
from service.errors import BadRequest, FieldError, UnprocessableEntity
from service.interactions.schemas import Interaction as InteractionPayload
from service.models import Delivery, DeliveryStatus, Interaction, WebhookReceipt
from service.models.base import utc_now
from service.webhooks.batching import IntakeBatcher
from service.webhooks.results import IntakeResult, interaction_values
from service.webhooks.schemas import CatalogEvent, InteractionEvent, event_adapter
from service.webhooks.signing_secrets import SigningSecretCache
from service.webhooks.verification import SignatureRejected, signed_by

WEBHOOK_ACTOR = "webhook"


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
    """One per process: the signing-secret cache and the intake writer live as long as it."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        secrets: SigningSecretCache,
        batcher: IntakeBatcher,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._secrets = secrets
        self.batcher = batcher

    def forget_secrets(self, organization_id: uuid.UUID) -> None:
        self._secrets.forget(organization_id)

    async def verify(self, organization_id: uuid.UUID, body: bytes, headers: dict[str, str]) -> str:
        """The webhook-id, once an active secret of the organization signed the body."""
        verifiers = await self._secrets.get(organization_id)
        if verifiers is None:  # unknown organization: the same 401 as a bad signature
            raise SignatureRejected.logged(headers)
        webhook_id = signed_by(body, headers, verifiers)
        if webhook_id is None:
            # Perhaps signed with a secret rotated in since it was cached: read them again.
            fresh = await self._secrets.refreshed(organization_id)
            webhook_id = signed_by(body, headers, fresh or [])
        if webhook_id is None:
            raise SignatureRejected.logged(headers)
        return webhook_id

    async def receive(
        self,
        organization_id: uuid.UUID,
        body: bytes,
        headers: dict[str, str],
        *,
        request_id: str | None = None,
    ) -> IntakeResult:
        webhook_id = await self.verify(organization_id, body, headers)
        event = _parse(body)
        if isinstance(event, InteractionEvent) and event.type == "interaction.completed":
            return await self.batcher.submit(
                organization_id, webhook_id, event, request_id=request_id
            )
        # Updates and catalogue events read before they write: a transaction of their own,
        # committed before the answer.
        async with self._sessionmaker.begin() as session:
            return await self._receive(session, organization_id, webhook_id, event)

    async def _receive(
        self,
        session: AsyncSession,
        organization_id: uuid.UUID,
        webhook_id: str,
        event: InteractionEvent | CatalogEvent,
    ) -> IntakeResult:
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
            return IntakeResult("duplicate")

        if isinstance(event, CatalogEvent):
            await catalog_service.replace(
                session,
                organization_id=organization_id,
                document=event.data,
                actor=WEBHOOK_ACTOR,
            )
            return IntakeResult("catalog_updated")
        if event.type == "interaction.updated":
            return await self._update(session, organization_id, event)
        return await self._complete(session, organization_id, event)

    async def _complete(
        self, session: AsyncSession, organization_id: uuid.UUID, event: InteractionEvent
    ) -> IntakeResult:
        interaction = await self._insert_interaction(session, organization_id, event)
        if interaction is None:
            return IntakeResult("duplicate")
        return await self._plan(session, interaction, event.data)

    async def _insert_interaction(
        self, session: AsyncSession, organization_id: uuid.UUID, event: InteractionEvent
    ) -> Interaction | None:
        """The new interaction row, or None when this id is already stored."""
        values = interaction_values(event)
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
        return IntakeResult.of("accepted", deliveries)

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
            return IntakeResult("stale")

        values = interaction_values(event)
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
