"""The registered arq task: thin, so the sending logic stays testable without a queue.

`delivery.send(delivery_id, request_id=None)` loads nothing itself: it hands the id to
`send_delivery` with the `DeliveryContext` the worker built at startup (style lesson 7). The
sender claims the row, sends with `Idempotency-Key` = the delivery id, records the attempt and
reschedules in the database; it raises nothing for Qualtrics errors, so arq's own retry
machinery (`Retry`, `max_tries`, the 24 h expiry) never decides a delivery's fate.
"""

import logging
import uuid
from typing import Any, cast

from arq.typing import WorkerCoroutine
from arq.worker import Function, func

from service.delivery.queue import DELIVERY_SEND, run_delivery
from service.worker.context import JobContext

logger = logging.getLogger(__name__)

# Far beyond any real count: arq's try counter only grows when a job is cut short (a killed or
# restarted worker), and the database, not arq, gives up on a delivery.
MAX_TRIES = 1000


async def send(raw_ctx: dict[str, Any], delivery_id: str, *, request_id: str | None = None) -> str:
    ctx = cast(JobContext, raw_ctx)
    try:
        parsed = uuid.UUID(delivery_id)
    except ValueError:
        logger.error("delivery.send: %r is not a delivery id; dropped", delivery_id)
        return "invalid"
    outcome = await run_delivery(ctx["delivery"], parsed, request_id=request_id)
    return outcome.value


def delivery_send(*, timeout: float) -> Function:
    """The task as arq registers it: our name, no kept result (see service.delivery.queue)."""
    # arq's WorkerCoroutine protocol only admits `(ctx, *args, **kwargs)` signatures.
    coroutine = cast(WorkerCoroutine, send)
    return func(coroutine, name=DELIVERY_SEND, keep_result=0, timeout=timeout, max_tries=MAX_TRIES)
