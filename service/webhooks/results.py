"""What intake answers for one webhook, and the interaction columns it stores."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from service.kit.json_text import JSONText
from service.models import Delivery, DeliveryStatus
from service.webhooks.schemas import InteractionEvent

IntakeStatus = Literal["accepted", "duplicate", "stale", "catalog_updated"]


@dataclass(frozen=True, slots=True)
class IntakeResult:
    status: IntakeStatus
    # The initial status of each delivery the event created, and the ids of those to enqueue.
    delivery_statuses: list[DeliveryStatus] = field(default_factory=list)
    pending_ids: list[uuid.UUID] = field(default_factory=list)
    # Whether the intake writer enqueues the pending deliveries itself, with its batch.
    enqueued_by_batch: bool = False

    @classmethod
    def of(cls, status: IntakeStatus, deliveries: Sequence[Delivery]) -> "IntakeResult":
        return cls(
            status,
            [delivery.status for delivery in deliveries],
            [d.id for d in deliveries if d.status == DeliveryStatus.PENDING],
        )


def interaction_values(event: InteractionEvent) -> dict[str, Any]:
    """The columns of an interaction row taken from its event."""
    started_at: datetime = event.data.started_at
    return {
        "external_id": event.data.id,
        # Dumped straight to JSON text: the same document as model_dump(mode="json"), but
        # serialized once, in pydantic's Rust core (service.kit.json_text).
        "payload": JSONText(event.data.model_dump_json()),
        "event_timestamp": event.timestamp,
        "started_at": started_at,
    }
