"""Request dependencies: the delivery log's filters, and enqueueing after the commit.

The request session commits when the endpoint function returns, before the response is
sent; background tasks run after the response. So a delivery enqueued from a background task
is always committed when a worker reads it, and a request that failed (and rolled back)
enqueues nothing, since its error response carries no background tasks.

Enqueueing is only a hint (`service.delivery.dispatch`): when the app has no dispatcher, or
the dispatcher fails, the sweeper still finds every due delivery. Hence a failure is logged,
never raised, and one request hints at most `MAX_ENQUEUE_HINT` deliveries.
"""

import logging
import uuid
from collections.abc import Sequence
from typing import Annotated

from fastapi import BackgroundTasks, Depends, Query, Request
from pydantic import AfterValidator, AwareDatetime

from service.deliveries.service import DeliveryFilters
from service.delivery.dispatch import Dispatcher
from service.errors import FieldError, UnprocessableEntity
from service.interactions.schemas import no_nul
from service.models import DeliveryStatus

logger = logging.getLogger(__name__)

MAX_ENQUEUE_HINT = 10_000


class DeliveryEnqueuer:
    """Enqueues delivery ids once the response is sent, i.e. after the commit."""

    def __init__(
        self, background: BackgroundTasks, dispatcher: Dispatcher | None, request_id: str | None
    ) -> None:
        self._background = background
        self._dispatcher = dispatcher
        self._request_id = request_id

    def enqueue(self, delivery_ids: Sequence[uuid.UUID]) -> None:
        if not delivery_ids:
            return
        if self._dispatcher is None:
            logger.info("no dispatcher: %d due deliveries left to the sweeper", len(delivery_ids))
            return
        self._background.add_task(
            _enqueue, self._dispatcher, list(delivery_ids[:MAX_ENQUEUE_HINT]), self._request_id
        )


async def _enqueue(
    dispatcher: Dispatcher, delivery_ids: list[uuid.UUID], request_id: str | None
) -> None:
    try:
        await dispatcher.enqueue(delivery_ids, request_id=request_id)
    except Exception:
        logger.warning(
            "enqueueing %d deliveries failed; the sweeper will pick them up",
            len(delivery_ids),
            exc_info=True,
        )


def delivery_enqueuer(request: Request, background: BackgroundTasks) -> DeliveryEnqueuer:
    dispatcher: Dispatcher | None = getattr(request.app.state, "dispatcher", None)
    # Set by `RequestContextMiddleware`, so the jobs log under the request's id.
    request_id: str | None = getattr(request.state, "request_id", None)
    return DeliveryEnqueuer(background, dispatcher, request_id)


EnqueueAfterCommit = Annotated[DeliveryEnqueuer, Depends(delivery_enqueuer)]


def delivery_filters(
    status: Annotated[
        list[DeliveryStatus] | None,
        Query(description="Only deliveries in these statuses (repeat the parameter for more)."),
    ] = None,
    trigger_id: Annotated[
        uuid.UUID | None, Query(description="Only deliveries this trigger matched.")
    ] = None,
    created_from: Annotated[
        AwareDatetime | None,
        Query(description="Only deliveries created at or after this time (with its offset)."),
    ] = None,
    created_to: Annotated[
        AwareDatetime | None,
        Query(description="Only deliveries created before this time (with its offset)."),
    ] = None,
    interaction_id: Annotated[
        # Compared in SQL: a NUL is a 422 here, not a PostgreSQL error (500).
        Annotated[str, AfterValidator(no_nul)] | None,
        Query(min_length=1, max_length=200, description="Only this Creovai interaction's."),
    ] = None,
) -> DeliveryFilters:
    if created_from is not None and created_to is not None and created_to <= created_from:
        raise UnprocessableEntity(
            "The time window is empty.",
            errors=[FieldError(pointer="/query/created_to", detail="Must be after created_from.")],
        )
    return DeliveryFilters(
        statuses=frozenset(status or ()),
        trigger_id=trigger_id,
        created_from=created_from,
        created_to=created_to,
        interaction_id=interaction_id,
    )


DeliveryFiltersDep = Annotated[DeliveryFilters, Depends(delivery_filters)]
