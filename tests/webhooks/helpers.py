"""Signing webhook requests the way the Creovai platform does (Standard Webhooks v1), and a
dispatcher that records what the intake enqueues."""

import copy
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from service.delivery.dispatch import QueuedDelivery
from service.interactions.schemas import INTERACTION_EXAMPLE
from service.kit.crypto import SecretBox
from service.models import WebhookSecret
from tests.conftest import TEST_FERNET_KEY


def interaction(**overrides: Any) -> dict[str, Any]:
    data = copy.deepcopy(INTERACTION_EXAMPLE)
    data["id"] = f"call-{uuid.uuid4().hex[:12]}"
    data.update(overrides)
    return data


def event(data: dict[str, Any], type_: str = "interaction.completed", **extra: Any) -> bytes:
    body = {"type": type_, "timestamp": datetime.now(UTC).isoformat(), "data": data, **extra}
    return json.dumps(body).encode()


def signed_headers(
    secret: str, body: bytes, *, webhook_id: str | None = None, at: datetime | None = None
) -> dict[str, str]:
    message_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    moment = at or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id=message_id, timestamp=moment, data=body.decode())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


async def organization_secret(
    sessionmaker: async_sessionmaker[AsyncSession], organization_id: uuid.UUID
) -> str:
    async with sessionmaker() as session:
        row = await session.scalar(
            select(WebhookSecret).where(WebhookSecret.organization_id == organization_id)
        )
        assert row is not None
        return SecretBox([TEST_FERNET_KEY]).decrypt(row.secret_encrypted)


async def post_event(
    client: httpx.AsyncClient,
    organization_id: uuid.UUID,
    secret: str,
    body: bytes,
    **header_options: Any,
) -> httpx.Response:
    return await client.post(
        f"/v1/webhooks/{organization_id}/interactions",
        content=body,
        headers=signed_headers(secret, body, **header_options),
    )


STALE = timedelta(minutes=6)


class RecordingDispatcher:
    """A `Dispatcher` that records what it is asked to enqueue: one batch a call."""

    def __init__(self) -> None:
        self.batches: list[list[QueuedDelivery]] = []

    @property
    def enqueued(self) -> list[uuid.UUID]:
        """The ids of every delivery enqueued, in order."""
        return [delivery.delivery_id for batch in self.batches for delivery in batch]

    async def enqueue(
        self, delivery_ids: Sequence[uuid.UUID], *, request_id: str | None = None
    ) -> None:
        self.batches.append([QueuedDelivery(id_, request_id) for id_ in delivery_ids])

    async def enqueue_many(self, deliveries: Sequence[QueuedDelivery]) -> None:
        self.batches.append(list(deliveries))


async def count(sessionmaker: async_sessionmaker[AsyncSession], model: type) -> int:  # type: ignore[type-arg]
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)
