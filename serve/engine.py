"""The tagging engine of the service: one current tagger, swapped atomically, fed in batches.

- **State**: an immutable :class:`EngineState` (tagger over one taxonomy snapshot, example
  index, lexical classifier). A published taxonomy edit or index generation builds the next
  state aside and swaps one reference; a batch reads the reference once, so in-flight
  requests finish on the snapshot they started with.
- **Batching**: HTTP requests queue their products; ``workers`` loops take whatever is
  queued (up to ``max_batch`` products) and tag it with one ``tag_many`` call in a thread.
  Concurrent single-product requests thus share one embedding call, and the LLM calls of a
  batch run concurrently (vLLM's engine loop, in small). A full queue answers 503.
- **Index updates** (feedback, deletions) copy the index, change the copy, publish it as a
  new generation and swap: readers never see an index being modified.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from agent.contract import Product, TagResult
from agent.tagger import LLM_PIPELINES, Tagger
from retrieval import CandidateGenerator, ExampleIndex, IndexStore, LexicalClassifier
from serve.llm_health import LLMHealth
from serve.metrics import Metrics
from serve.runtime import Runtime
from taxonomy import Snapshot

log = logging.getLogger("tagsmith.engine")
T = TypeVar("T")

#: up to this many examples the lexical classifier is retrained within the index update
#: (~3 s per 1,000 on 2 cores); bigger indexes retrain in the background, debounced
LEXICAL_SYNC_MAX = 1000
LEXICAL_RETRAIN_DELAY_S = 10.0


class EngineOverloaded(Exception):
    """More products are waiting than the queue allows."""


@dataclass(frozen=True)
class EngineState:
    tagger: Tagger
    index: ExampleIndex
    lexical: LexicalClassifier | None
    index_generation: str | None

    @property
    def snapshot(self) -> Snapshot:
        return self.tagger.snapshot


@dataclass
class _Work:
    products: Sequence[Product]
    future: asyncio.Future[list[TagResult]]
    queued_at: float = field(default_factory=time.perf_counter)


class TaggingEngine:
    def __init__(
        self,
        runtime: Runtime,
        index_store: IndexStore,
        health: LLMHealth,
        metrics: Metrics,
        *,
        max_batch: int = 64,
        max_queue: int = 4096,
        workers: int = 2,
        generation: str | None = None,
    ) -> None:
        """``generation``: the index generation current *before* the runtime loaded it (read
        after, a publication in between would go unnoticed; read before, it is reloaded once)."""
        self.runtime = runtime
        self.index_store = index_store
        self.health = health
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.workers = workers
        lexical = runtime.tagger.generator.lexical  # the classifier the runtime's tagger uses
        self._state = EngineState(runtime.tagger, runtime.index, lexical, generation)
        self._swap_lock = threading.Lock()  # one state builder at a time
        self._index_lock = threading.Lock()  # one index writer at a time
        self._pending: deque[_Work] = deque()
        self._queued = 0
        self._cond: asyncio.Condition | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.failure: str | None = None
        self._retrain_timer: threading.Timer | None = None
        self._observe(self._state)

    # ---- state -------------------------------------------------------------------------
    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def pipeline(self) -> str:
        return self._state.tagger.config.pipeline

    @property
    def uses_llm(self) -> bool:
        return self.pipeline in LLM_PIPELINES and self._state.tagger.llm is not None

    def _observe(self, state: EngineState) -> None:
        self.metrics.taxonomy_version.set(state.snapshot.version)
        self.metrics.index_examples.set(len(state.index))

    def _swap(self, build: Callable[[EngineState], EngineState | None]) -> EngineState:
        with self._swap_lock:
            new = build(self._state)
            if new is not None:
                self._state = new  # the one reference readers take
                self._observe(new)
            return self._state

    def use_snapshot(self, snapshot: Snapshot) -> EngineState:
        """Tag new requests against ``snapshot`` (ignored when not newer than the current)."""

        def build(cur: EngineState) -> EngineState | None:
            if snapshot.version <= cur.snapshot.version:
                return None
            return replace(cur, tagger=_retarget(cur.tagger, cur.tagger.generator.with_snapshot(snapshot)))

        before = self._state
        state = self._swap(build)
        if state is not before:
            log.info("taxonomy version in use", extra={"taxonomy_version": state.snapshot.version})
        return state

    def use_index(
        self, index: ExampleIndex, lexical: LexicalClassifier | None, generation: str | None
    ) -> EngineState:
        def build(cur: EngineState) -> EngineState:
            old = cur.tagger.generator
            generator = CandidateGenerator(
                old.embedder, old.snapshot, index, config=old.config,
                taxonomy_index=old.taxonomy_index, lexical=lexical,
            )
            return EngineState(_retarget(cur.tagger, generator), index, lexical, generation)

        return self._swap(build)

    def update_index(self, change: Callable[[ExampleIndex], T]) -> tuple[T, EngineState]:
        """Copy the index, apply ``change`` to the copy, publish it, swap it in."""
        with self._index_lock:
            cur = self._state
            index = ExampleIndex.from_files(cur.index.to_files())
            out = change(index)
            lexical = cur.lexical
            retrain_later = False
            if len(index) <= LEXICAL_SYNC_MAX:
                lexical = LexicalClassifier.fit(list(index))
            else:
                retrain_later = True
            state = self._publish(index, lexical)
        if retrain_later:
            self._schedule_retrain()
        return out, state

    def _publish(self, index: ExampleIndex, lexical: LexicalClassifier | None) -> EngineState:
        embedder = self.runtime.embedder
        manifest = self.index_store.publish(
            index, embedder=embedder.name, taxonomy_version=self._state.snapshot.version,
            lexical=lexical,
        )
        return self.use_index(index, lexical, manifest.generation)

    def _schedule_retrain(self) -> None:
        if self._retrain_timer is not None:
            self._retrain_timer.cancel()  # debounce: one retrain after a burst of feedback
        timer = threading.Timer(LEXICAL_RETRAIN_DELAY_S, self._retrain)
        timer.daemon = True
        self._retrain_timer = timer
        timer.start()

    def _retrain(self) -> None:
        index = self._state.index
        lexical = LexicalClassifier.fit(list(index))
        with self._index_lock:
            if self._state.index is not index:  # changed meanwhile: that change reschedules
                return
            self._publish(index, lexical)
        log.info("lexical classifier retrained", extra={"examples": len(index)})

    def refresh(self) -> None:
        """Pick up a taxonomy version or index generation published by another process."""
        store = self.runtime.store
        if store.refresh() > self._state.snapshot.version:
            self.use_snapshot(store.current())
        pointer = self.index_store.current()
        if pointer is not None and pointer[0] != self._state.index_generation:
            with self._index_lock:
                embedder = self.runtime.embedder
                index, lexical, manifest = self.index_store.load_bundle(embedder=embedder.name, dim=embedder.dim)
                if manifest.generation != self._state.index_generation:
                    self.use_index(index, lexical, manifest.generation)
                    log.info("index generation in use", extra={"generation": manifest.generation})

    # ---- tagging -----------------------------------------------------------------------
    def tag_sync(self, products: Sequence[Product]) -> list[TagResult]:
        """Tag in the calling thread, all against one state. Each result says itself whether
        it was answered without the LLM because the backend was down (evidence.llm.degraded)."""
        return self._state.tagger.tag_many(products)

    async def tag(self, products: Sequence[Product]) -> list[TagResult]:
        if self._cond is None or not self._tasks:
            raise RuntimeError("the engine is not started")
        if self._queued and self._queued + len(products) > self.max_queue:
            raise EngineOverloaded(f"{self._queued} products are waiting")
        work = _Work(products, asyncio.get_running_loop().create_future())
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
            while self._pending and size + len(self._pending[0].products) <= self.max_batch:
                work = self._pending.popleft()
                batch.append(work)
                size += len(work.products)
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
            self.metrics.engine_batch.observe(len(products))
            try:
                results = await asyncio.to_thread(self.tag_sync, products)
            except Exception:
                # requests share a batch, not a fate: retry each alone, so only the request
                # with the product that fails gets the error
                log.exception("tagging batch failed", extra={"requests": len(live)})
                for w in live:
                    try:
                        alone = await asyncio.to_thread(self.tag_sync, w.products)
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
        if self._retrain_timer is not None:
            self._retrain_timer.cancel()


def _retarget(old: Tagger, generator: CandidateGenerator) -> Tagger:
    """The same tagger (LLM, config, prompts, validator) over another generator."""
    return Tagger(generator, old.llm, config=old.config, prompts=old.prompts, validator=old.validator)
