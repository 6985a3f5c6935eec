"""Micro-batching of tagging requests: a queue, worker loops, one ``tag`` call per batch.

HTTP requests queue their products; ``workers`` loops take whatever is queued (up to
``max_batch`` products) and tag it with one call in a thread. Concurrent single-product
requests thus share one embedding call, and the LLM calls of a batch run concurrently
(vLLM's engine loop, in small). A full queue answers :class:`Overloaded`. What the batch
is tagged with is not the batcher's business: it is handed a ``tag`` function.

A batch is tagged with one attribute selection: requests that ask for different attributes
(``on``, ``off``, named ones) never share a batch. A worker takes the oldest request, then
the waiting requests with the same selection (in order, up to ``max_batch``); the others
stay queued, in order, for the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agent.contract import AttributeSelection, Product, TagResult
from serve.attribute_selection import selection_key
from serve.metrics import Metrics

log = logging.getLogger("tagsmith.engine")

#: tags a batch in the calling thread, results in input order; the selection: which
#: attributes (None: the configured default)
TagFn = Callable[[Sequence[Product], AttributeSelection | None], list[TagResult]]


class Overloaded(Exception):
    """More products are waiting than the queue allows."""


@dataclass
class _Work:
    products: Sequence[Product]
    future: asyncio.Future[list[TagResult]]
    attributes: AttributeSelection | None = None
    queued_at: float = field(default_factory=time.perf_counter)

    @property
    def key(self) -> object:
        return selection_key(self.attributes)


class Batcher:
    def __init__(
        self, tag: TagFn, metrics: Metrics, *, max_batch: int = 64, max_queue: int = 4096, workers: int = 2
    ) -> None:
        """``tag``: tags a batch in the calling thread, results in input order."""
        self._tag = tag
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.workers = workers
        self._pending: deque[_Work] = deque()
        self._queued = 0
        self._cond: asyncio.Condition | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.failure: str | None = None

    async def tag(
        self, products: Sequence[Product], attributes: AttributeSelection | None = None
    ) -> list[TagResult]:
        if self._cond is None or not self._tasks:
            raise RuntimeError("the engine is not started")
        if self._queued and self._queued + len(products) > self.max_queue:
            raise Overloaded(f"{self._queued} products are waiting")
        work = _Work(products, asyncio.get_running_loop().create_future(), attributes)
        async with self._cond:
            self._pending.append(work)
            self._queued += len(products)
            self.metrics.engine_queue.set(self._queued)
            self._cond.notify()
        return await work.future

    async def _next_batch(self) -> list[_Work]:
        assert self._cond is not None
        async with self._cond:
            await self._cond.wait_for(lambda: bool(self._pending))
            batch = [self._pending.popleft()]
            size = len(batch[0].products)
            key = batch[0].key
            if self._pending and size < self.max_batch:
                left: deque[_Work] = deque()
                for work in self._pending:
                    if work.key == key and size + len(work.products) <= self.max_batch:
                        batch.append(work)
                        size += len(work.products)
                    else:
                        left.append(work)
                self._pending = left
            self._queued -= size
            self.metrics.engine_queue.set(self._queued)
            return batch

    async def _worker(self) -> None:
        while True:
            batch = await self._next_batch()
            live = [w for w in batch if not w.future.done()]  # drop requests whose client left
            products = [p for w in live for p in w.products]
            if not products:
                continue
            attributes = live[0].attributes  # one selection per batch (_next_batch)
            self.metrics.engine_batch.observe(len(products))
            try:
                results = await asyncio.to_thread(self._tag, products, attributes)
            except Exception:
                # requests share a batch, not a fate: retry each alone, so only the request
                # with the product that fails gets the error
                log.exception("tagging batch failed", extra={"requests": len(live)})
                for w in live:
                    try:
                        alone = await asyncio.to_thread(self._tag, w.products, w.attributes)
                    except Exception as exc:
                        if not w.future.done():
                            w.future.set_exception(exc)
                        continue
                    if not w.future.done():
                        w.future.set_result(alone)
                continue
            start = 0
            for w in live:
                end = start + len(w.products)
                if not w.future.done():
                    w.future.set_result(results[start:end])
                start = end

    def _on_worker_exit(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.failure = f"engine worker died: {task.exception()!r}"
            log.error(self.failure)

    async def start(self) -> None:
        self._cond = asyncio.Condition()
        for i in range(self.workers):
            task = asyncio.create_task(self._worker(), name=f"tagsmith-engine-{i}")
            task.add_done_callback(self._on_worker_exit)
            self._tasks.append(task)

    @property
    def alive(self) -> bool:
        return self.failure is None and bool(self._tasks) and not any(t.done() for t in self._tasks)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
