"""Group commit for any step that many concurrent callers take: one flush for all of them.

Used where a round trip per caller would dominate (the worker's delivery claims and records,
service.delivery.batches; arq's end-of-job bookkeeping, service.worker.arq_worker).
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class Coalescer(Generic[Item, Answer]):
    """Runs `flush` over whatever callers submitted meanwhile, one flush at a time.

    An idle coalescer flushes a lone item at once, and items that arrive during a flush go
    together in the next one (group commit). While items keep arriving, it waits up to
    `linger` before a flush of fewer than `linger_below`, so batches grow under load; a lone
    item after a quiet spell never waits. A caller that is cancelled stops waiting, but its
    item's flush still runs to the end. A flush that raises answers None to each of its
    callers, which then do the work on their own.
    """

    def __init__(
        self,
        flush: Callable[[list[Item]], Awaitable[Sequence[Answer | None]]],
        max_batch: int,
        linger: float = 0.0,
        linger_below: int = 8,
        name: str = "batch",
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._linger = linger
        self._linger_below = linger_below
        self._name = name
        self._waiting: list[tuple[Item, asyncio.Future[Answer | None]]] = []
        self._running: asyncio.Task[None] | None = None
        self.flushes = 0
        self.items = 0

    async def submit(self, item: Item) -> Answer | None:
        future: asyncio.Future[Answer | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._running is None:
            self._running = asyncio.create_task(self._drain(), name=self._name)
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            busy = False
            while self._waiting:
                if busy and self._linger and len(self._waiting) < self._linger_below:
                    # Steps keep coming (this is not the first batch since idle): a moment's
                    # wait makes the next batch larger, each step cheaper.
                    await asyncio.sleep(self._linger)
                busy = True
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                self.flushes += 1
                self.items += len(batch)
                try:
                    results = await self._flush([item for item, _ in batch])
                except Exception as exc:
                    logger.warning(
                        "%s: a batch of %d failed (%s); each caller does its step alone",
                        self._name,
                        len(batch),
                        type(exc).__name__,
                        exc_info=True,
                    )
                    results = [None] * len(batch)
                except BaseException:
                    for _, future in [*batch, *self._waiting]:
                        if not future.done():
                            future.set_result(None)
                    self._waiting.clear()
                    raise
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._running = None

    async def aclose(self) -> None:
        """Wait until every submitted item was flushed."""
        while self._running is not None:
            await asyncio.gather(self._running, return_exceptions=True)
