"""What intake answers for one webhook, and the interaction columns it stores."""

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from service.models import Delivery, DeliveryStatus
from service.webhooks.schemas import InteractionEvent

IntakeStatus = Literal["accepted", "duplicate", "stale", "catalog_updated"]


@dataclass(frozen=True, slots=True)
class IntakeResult:
    status: IntakeStatus
    deliveries: list[Delivery]
    # Set when the intake writer enqueues the pending deliveries itself, with its batch.
    batch_enqueue: "asyncio.Future[None] | None" = None

    @property
    def pending_ids(self) -> list[uuid.UUID]:
        return [d.id for d in self.deliveries if d.status == DeliveryStatus.PENDING]


def interaction_values(event: InteractionEvent) -> dict[str, Any]:
    """The columns of an interaction row taken from its event."""
    started_at: datetime = event.data.started_at
    return {
        "external_id": event.data.id,
        "payload": event.data.model_dump(mode="json"),
        "event_timestamp": event.timestamp,
        "started_at": started_at,
    }
