"""How due deliveries reach a worker: the `Dispatcher` the api and the sweeper enqueue through.

Enqueueing is only ever a hint that work is due: the database row is the truth. A dispatcher
that fails (Redis down) loses nothing, because the sweeper re-enqueues every delivery that is
due and was not enqueued recently. Callers therefore log a failure and carry on.
"""

import uuid
from collections.abc import Sequence
from typing import NamedTuple, Protocol


class QueuedDelivery(NamedTuple):
    """A delivery to enqueue, with the request id of the webhook that created it (for logs)."""

    delivery_id: uuid.UUID
    request_id: str | None


class Dispatcher(Protocol):
    async def enqueue(
        self, delivery_ids: Sequence[uuid.UUID], *, request_id: str | None = None
    ) -> None:
        """Ask for these deliveries to be attempted soon (after their transaction committed)."""
        ...

    async def enqueue_many(self, deliveries: Sequence[QueuedDelivery]) -> None:
        """The same for deliveries of several requests at once (one intake batch), which were
        inserted with `last_enqueued_at` already stamped: the dispatcher clears the stamp of
        any it could not enqueue, so the sweeper takes them at its next pass."""
        ...


def job_id(delivery_id: uuid.UUID) -> str:
    """Deterministic, so enqueueing a delivery that is already queued adds nothing."""
    return f"delivery.send:{delivery_id}"
