"""Group commit for completed interactions: many webhooks, one transaction, each answered
only once its rows are durable.

One commit per webhook caps intake at what the database can fsync and round-trip per request
(reliability-facts §4.2: a PostgreSQL insert per request halves a bare endpoint's rate). Here
each request verifies and validates its webhook itself, then hands the event to this process's
writer and waits. The writer takes everything that arrived while the previous transaction was
committing, stores it in one transaction (receipts, interactions and deliveries as multi-row
INSERT ... ON CONFLICT DO NOTHING), commits, and only then answers each waiting request. So a
202 still means "committed", and under load a commit carries tens of webhooks instead of one.
Idle, a batch is a single webhook and costs what it did before.

Duplicates are decided as before, by the unique keys in the database (and, inside one batch,
first come first served: a second copy of a webhook-id or interaction in the same batch
answers `duplicate` once the first is committed).

A failed batch fails every request in it the same way (a database outage answers 503 to all);
any other failure is retried one webhook at a time, so one bad row cannot fail its neighbours.
After the commit, the new pending deliveries of the whole batch are enqueued in one call; if
that fails, the sweeper enqueues them (the outbox rule, service.delivery.dispatch).
"""

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service.db import PING_TIMEOUT
from service.delivery.dispatch import Dispatcher, QueuedDelivery
from service.delivery.planner import (
    Candidate,
    candidates,
    initial_status,
    matches,
)
from service.errors import DATABASE_UNAVAILABLE, ServiceUnavailable
from service.kit.ids import time_ordered_uuids
from service.kit.pinned import PinnedConnection
from service.models import DeliveryStatus
from service.models.base import utc_now
from service.observability.metrics import INTAKE_BATCH_SIZE
from service.webhooks.bulk import BatchRows, store_in_session, store_postgres
from service.webhooks.planning_state import PlanningStates
from service.webhooks.results import IntakeResult, interaction_values
from service.webhooks.schemas import InteractionEvent

logger = logging.getLogger(__name__)

# Enough to amortize a commit; small enough that one batch's SQL stays well under the
# drivers' parameter limits (SQLite: 32,766) and one failure retries few webhooks.
MAX_BATCH = 200
# Webhooks waiting for the writer beyond which intake answers 503 instead of queueing more:
# about two seconds of work at full speed, so a stalled database sheds load instead of memory.
MAX_WAITING = 5_000
# A batch statement with no answer within this fails its webhooks (503, to be sent again): a
# database that went silent (a partition) must not hold intake; the pool's checkout ping has
# the same deadline (service.db).
STATEMENT_TIMEOUT = PING_TIMEOUT
# Batches planned again when an admin changed the organization's integrations or triggers
# meanwhile (service.webhooks.planning_state) before the batch fails (one by one, then).
PLANNING_ATTEMPTS = 3


@dataclass(slots=True)
class _Waiting:
    organization_id: uuid.UUID
    webhook_id: str
    event: InteractionEvent
    request_id: str | None
    answer: asyncio.Future[IntakeResult] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class IntakeBatcher:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        dispatcher: Callable[[], Dispatcher | None],
        *,
        max_batch: int = MAX_BATCH,
        max_waiting: int = MAX_WAITING,
        writers: int = 1,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._engine: AsyncEngine = sessionmaker.kw["bind"]
        # PostgreSQL takes a batch as one self-committing statement (service.webhooks.bulk).
        self._postgres = self._engine.dialect.name == "postgresql"
        self._planning_states = PlanningStates(sessionmaker)
        self._dispatcher = dispatcher
        self._max_batch = max_batch
        self._writer_count = writers
        self._queue: asyncio.Queue[_Waiting] = asyncio.Queue(max_waiting)
        self._writers: list[asyncio.Task[None]] = []
        self._enqueues: set[asyncio.Task[None]] = set()
        self._closing = False

    def start(self) -> None:
        self._writers = [
            asyncio.create_task(self._write_forever(), name=f"intake-writer-{number}")
            for number in range(self._writer_count)
        ]

    async def aclose(self) -> None:
        """Stop taking webhooks, store and answer the ones already waiting, then stop."""
        self._closing = True
        if self._writers:
            await self._queue.join()
            for writer in self._writers:
                writer.cancel()
            await asyncio.gather(*self._writers, return_exceptions=True)
        if self._enqueues:
            await asyncio.gather(*self._enqueues, return_exceptions=True)

    async def submit(
        self,
        organization_id: uuid.UUID,
        webhook_id: str,
        event: InteractionEvent,
        *,
        request_id: str | None = None,
    ) -> IntakeResult:
        """Store a completed interaction; returns once it is committed (or raises)."""
        if self._closing or not self._writers or self._queue.full():
            raise ServiceUnavailable(
                "Intake is at capacity (or shutting down); send this webhook again shortly.",
                headers={"Retry-After": "1"},
            )
        waiting = _Waiting(organization_id, webhook_id, event, request_id)
        self._queue.put_nowait(waiting)
        # A client that hangs up cancels only this wait (its answer future): the batch goes on,
        # and the writer skips answering a cancelled one.
        return await waiting.answer

    async def _write_forever(self) -> None:
        # On PostgreSQL each writer keeps a connection of its own (service.kit.pinned).
        connection = (
            PinnedConnection(self._engine, timeout=STATEMENT_TIMEOUT) if self._postgres else None
        )
        try:
            while True:
                batch = [await self._queue.get()]
                while len(batch) < self._max_batch and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                try:
                    await self._write(batch, connection)
                finally:
                    for _ in batch:
                        self._queue.task_done()
        finally:
            if connection is not None:
                await connection.aclose()

    async def _write(self, batch: list[_Waiting], connection: PinnedConnection | None) -> None:
        dispatcher = self._dispatcher()
        try:
            results = await self._store(
                batch, connection=connection, enqueue=dispatcher is not None
            )
            INTAKE_BATCH_SIZE.observe(len(batch))
        except DATABASE_UNAVAILABLE as exc:
            # The database is unreachable: every webhook of the batch fails alike (503).
            _fail(batch, exc)
            return
        except (DBAPIError, asyncpg.PostgresError) as exc:
            if getattr(exc, "connection_invalidated", False) or len(batch) == 1:
                _fail(batch, exc)
                return
            logger.warning("an intake batch of %d failed; storing them one by one", len(batch))
            for waiting in batch:
                await self._write([waiting], connection)
            return
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch, exc)
                return
            logger.exception("an intake batch of %d failed; storing them one by one", len(batch))
            for waiting in batch:
                await self._write([waiting], connection)
            return
        queued = [
            QueuedDelivery(delivery_id, waiting.request_id)
            for waiting, result in zip(batch, results, strict=True)
            for delivery_id in result.pending_ids
        ]
        if queued and dispatcher is not None:
            enqueue = asyncio.create_task(self._enqueue(dispatcher, queued))
            self._enqueues.add(enqueue)
            enqueue.add_done_callback(self._enqueues.discard)
        for waiting, result in zip(batch, results, strict=True):
            if not waiting.answer.done():
                waiting.answer.set_result(result)

    @staticmethod
    async def _enqueue(dispatcher: Dispatcher, queued: Sequence[QueuedDelivery]) -> None:
        try:
            await dispatcher.enqueue_many(queued)
        except Exception:
            # Committed rows; the sweeper enqueues them if this did not.
            logger.warning(
                "enqueue after commit failed; the sweeper will pick them up", exc_info=True
            )

    async def _store(
        self,
        batch: list[_Waiting],
        *,
        connection: PinnedConnection | None = None,
        enqueue: bool = True,
    ) -> list[IntakeResult]:
        """The batch stored at once (one statement on PostgreSQL, one transaction elsewhere);
        the result of each webhook, in order."""
        organizations = {waiting.organization_id for waiting in batch}
        if connection is not None:
            for _ in range(PLANNING_ATTEMPTS):
                states = {
                    organization_id: await self._planning_states.get(connection, organization_id)
                    for organization_id in organizations
                }
                found = {organization: state.candidates for organization, state in states.items()}
                rows, planned = _plan(batch, found, enqueue=enqueue)
                rows.planned_with = {
                    organization: state.fingerprint for organization, state in states.items()
                }
                stored = await store_postgres(connection, rows)
                if not stored.stale:
                    break
                self._planning_states.forget(stored.stale)
            else:
                raise RuntimeError(
                    f"the planning state changed under {PLANNING_ATTEMPTS} attempts in a row"
                )
        else:
            async with self._sessionmaker.begin() as session:
                found = {
                    organization_id: await candidates(session, organization_id)
                    for organization_id in organizations
                }
                rows, planned = _plan(batch, found, enqueue=enqueue)
                stored = await store_in_session(session, rows)
        return [
            IntakeResult(
                "accepted",
                [status for _, status in deliveries],
                [id_ for id_, status in deliveries if status is DeliveryStatus.PENDING],
                enqueued_by_batch=True,
            )
            if interaction_id in stored.interactions
            else IntakeResult("duplicate")
            for interaction_id, deliveries in planned
        ]


# Per webhook of a batch: the id its interaction row would have (None for an in-batch copy)
# and the ids and initial statuses of the deliveries planned for it.
Planned = list[tuple[uuid.UUID | None, list[tuple[uuid.UUID, DeliveryStatus]]]]


def _plan(
    batch: Sequence[_Waiting], found: dict[uuid.UUID, list[Candidate]], *, enqueue: bool
) -> tuple[BatchRows, Planned]:
    """The rows of the whole batch, as if every webhook in it were new (the database then
    keeps only what is): the first copy of each webhook-id, and of each interaction, wins."""
    now = utc_now()
    # Pending deliveries are stamped now: the batch is enqueued right after its commit, and
    # the dispatcher clears the stamp of any it could not enqueue (so no UPDATE after it).
    rows = BatchRows(now=now, enqueued_at=now if enqueue else None)
    planned: Planned = [(None, []) for _ in batch]
    first_copy: dict[tuple[uuid.UUID, str], int] = {}
    for index, waiting in enumerate(batch):
        first_copy.setdefault((waiting.organization_id, waiting.webhook_id), index)
    # Key order: see service.webhooks.bulk (one lock order for concurrent batches).
    for (organization_id, webhook_id), index in sorted(first_copy.items(), key=_key_order):
        rows.receipts.add(
            organization_id=organization_id,
            webhook_id=webhook_id,
            event_type=batch[index].event.type,
        )
    first_interaction: dict[tuple[uuid.UUID, str], int] = {}
    for index in first_copy.values():
        waiting = batch[index]
        first_interaction.setdefault((waiting.organization_id, waiting.event.data.id), index)
    ordered = sorted(first_interaction.items(), key=_key_order)
    matched = [
        list(matches(batch[index].event.data, found[organization_id]))
        for (organization_id, _), index in ordered
    ]
    ids = iter(time_ordered_uuids(len(ordered) + sum(len(each) for each in matched)))
    for ((organization_id, _), index), targets in zip(ordered, matched, strict=True):
        interaction_id = next(ids)
        rows.interactions.add(
            id=interaction_id,
            organization_id=organization_id,
            webhook_id=batch[index].webhook_id,
            **interaction_values(batch[index].event),
        )
        deliveries = []
        for integration, trigger in targets:
            status = initial_status(integration)
            delivery_id = next(ids)
            rows.deliveries.add(
                id=delivery_id,
                interaction_id=interaction_id,
                target=rows.targets.number(
                    integration_id=integration.id,
                    trigger_id=trigger.id,
                    trigger_name=trigger.name,
                    status=status,
                ),
            )
            deliveries.append((delivery_id, status))
        planned[index] = (interaction_id, deliveries)
    return rows, planned


def _key_order(item: tuple[tuple[uuid.UUID, str], int]) -> tuple[int, str]:
    """Batches order their rows by (organization, key): any one total order serves."""
    (organization_id, key), _ = item
    return organization_id.int, key


def _fail(batch: Sequence[_Waiting], exc: BaseException) -> None:
    for waiting in batch:
        if not waiting.answer.done():
            waiting.answer.set_exception(exc)
