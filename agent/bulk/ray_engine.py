"""Bulk tagging on Ray Data: the same tagging code, a pool of actors that each build it once.

``map_batches`` runs :class:`_TagWorker` actors: each calls the :data:`TaggingFactory` once
(embedder, example index, lexical model, LLM client) and then tags batch after batch. The
input is **streamed**: a feeder thread in the driver reads the products a chunk at a time
(a batch; more when the run has over :data:`MAX_READ_TASKS` batches) into a :class:`_Feeder`
actor, from which a Ray Data datasource's read tasks (one per chunk, holding only its index)
take them; the driver keeps at most :func:`window_chunks` chunks out
(:class:`agent.bulk.window.FeedWindow`), so its memory does not grow with the input. The results come back **in input order** (``preserve_order``, and
the window's bounded reorder buffer behind it), so a caller that appends each batch as it
arrives writes the same file, line for line, as the single-process path.

Exactly once across crashes is the caller's append-and-resume (:mod:`retrieval.durable`):
only the driver writes, a batch at a time, fsynced; a killed driver leaves complete lines
(and at most one torn line, cut on resume), and a re-run skips the ids written. A killed
worker loses nothing that was written: Ray restarts the actor (``max_restarts``) and re-runs
its unfinished batches (``max_task_retries``); their results reach the driver once, because
only a finished task's output is delivered.

Local mode (no ``address``) starts a private Ray instance with ``workers`` CPUs and a small
object store; ``address="auto"`` joins a running cluster, ``"ray://host:10001"`` goes
through Ray Client, ``"HOST:PORT"`` joins the cluster whose head listens there. On a cluster
every worker builds its tagging from the same settings, so the data directory must be
readable there (shared storage or a copy; README "On a Ray cluster"); the feeder actor runs
on the driver's node.

``ray`` is an optional extra (``pip install 'tagsmith[ray]'``): imported only here, lazily.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import resource
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.bulk.source import BatchTagging, TaggingFactory
from agent.bulk.window import FeedWindow
from agent.contract import Product, TagResult

RAY_EXTRA = "the Ray engine needs the ray extra: pip install 'tagsmith[ray]' (or scripts/install-ray.sh)"
#: a killed worker is restarted this many times, and a batch it was running re-run as often;
#: bounded so that a worker that dies on every start (out of memory) fails the run
MAX_RESTARTS = 4
#: the object store of a local instance: the products and results in flight (it spills to
#: disk beyond), not Ray's default of 30 % of the machine's memory
LOCAL_OBJECT_STORE_BYTES = 512 * 1024 * 1024


class RayUnavailableError(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached."""


@dataclass
class WorkerStats:
    pid: int
    node: str
    products: int = 0
    max_rss_mb: float = 0.0


@dataclass
class RayRunStats:
    """What the run saw: per worker process (a restarted actor is a new process), the
    products it tagged and its peak resident memory."""

    workers: dict[tuple[str, int], WorkerStats] = field(default_factory=dict)

    def add(self, node: str, pid: int, products: int, max_rss_mb: float) -> None:
        stats = self.workers.setdefault((node, pid), WorkerStats(pid, node))
        stats.products += products
        stats.max_rss_mb = max(stats.max_rss_mb, max_rss_mb)

    @property
    def peak_worker_rss_mb(self) -> float:
        return max((w.max_rss_mb for w in self.workers.values()), default=0.0)

    def summary(self) -> str:
        """One line: the worker processes, what each tagged, their peak RSS."""
        parts = [
            f"pid {w.pid}{'' if len({n for n, _ in self.workers}) == 1 else '@' + w.node}: "
            f"{w.products:,} ({w.max_rss_mb:,.0f} MB peak RSS)"
            for w in sorted(self.workers.values(), key=lambda w: (w.node, w.pid))
        ]
        return f"{len(parts)} worker process(es): " + ", ".join(parts)


def max_rss_mb() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _TagWorker:
    """One Ray actor: builds the tagging once, then tags the batches it is given."""

    def __init__(self, factory: TaggingFactory) -> None:
        import socket

        self.tagging: BatchTagging = factory()
        self.pid = os.getpid()
        self.node = socket.gethostname()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        products = [Product.model_validate_json(text) for text in batch["product"]]
        results = self.tagging.tag_many(products)
        n = len(results)
        return {
            "seq": batch["seq"],
            "result": [r.model_dump_json() for r in results],
            "pid": [self.pid] * n,
            "node": [self.node] * n,
            "max_rss_mb": [max_rss_mb()] * n,
        }


def _connect(address: str | None, workers: int | None) -> bool:
    """Start or join Ray; True when this call started it (and should shut it down)."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(RAY_EXTRA) from exc
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")  # the caller draws its own
    try:
        if address is None:
            ray.init(
                num_cpus=workers or os.cpu_count() or 1, include_dashboard=False,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES, logging_level=logging.WARNING,
            )
        else:
            ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayUnavailableError(f"cannot start or reach Ray at {address or 'a local instance'}: {exc}") from exc
    return True


def cluster_cpus() -> int:
    import ray

    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call,unused-ignore]
    return max(1, int(resources.get("CPU", 1)))


class _Feeder:
    """The chunks of products between the driver and the read tasks (an async Ray actor, no
    CPU): the driver puts chunk after chunk (at most the window's capacity ahead), read task
    ``i`` waits for chunk ``i``; a chunk stays until the driver has all its results (a read
    task retried after a crash finds it again), then the driver releases it."""

    def __init__(self) -> None:
        import asyncio

        self._asyncio = asyncio
        self._chunks: dict[int, Any] = {}
        self._ready: dict[int, Any] = {}
        self._released = 0
        self._error: str | None = None

    def _event(self, index: int) -> Any:
        if index not in self._ready:
            self._ready[index] = self._asyncio.Event()
        return self._ready[index]

    async def put(self, index: int, table: Any) -> None:
        self._chunks[index] = table
        self._event(index).set()

    async def get(self, index: int) -> Any:
        if index < self._released:
            raise RuntimeError(f"chunk {index} was already released")
        if self._error is None:  # (fail() sets every event that exists: none is missed)
            await self._event(index).wait()
        if self._error is not None:
            raise RuntimeError(f"the driver stopped feeding: {self._error}")
        return self._chunks[index]

    async def release(self, index: int) -> None:
        for i in range(self._released, index + 1):
            self._chunks.pop(i, None)
            self._ready.pop(i, None)
        self._released = max(self._released, index + 1)

    async def fail(self, error: str) -> None:
        self._error = error
        for event in self._ready.values():
            event.set()


def _read_chunk(feeder: Any, index: int, batch_size: int) -> Iterator[Any]:
    """A read task: chunk ``index`` from the feeder, a block per batch."""
    import ray

    table = ray.get(feeder.get.remote(index))
    for start in range(0, table.num_rows, batch_size):
        yield table.slice(start, batch_size)


def _driver_node() -> Any:
    """The feeder's placement: this driver's node when it is one (soft: anywhere otherwise,
    e.g. through Ray Client), so that the products do not cross the network twice."""
    try:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    except Exception:  # no node id (a client connection): Ray's default placement
        return "DEFAULT"


def _feed_source(feeder: Any, total: int, chunk_size: int, batch_size: int) -> Any:
    """A Ray Data datasource of ``total`` products in chunks of ``chunk_size``, read from the
    feeder: one small read task per chunk (an index, no data), so the plan stays small."""
    from functools import partial

    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class FeedSource(Datasource):  # type: ignore[misc]
        def estimate_inmemory_data_size(self) -> int | None:
            return None

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: Any = None) -> list[Any]:
            return [
                ReadTask(partial(_read_chunk, feeder, index, batch_size),
                         BlockMetadata(num_rows=min(chunk_size, total - start), size_bytes=None,
                                       exec_stats=None, input_files=None))
                for index, start in enumerate(range(0, total, chunk_size))
            ]

    return FeedSource()  # type: ignore[no-untyped-call]


#: read tasks at most in one run: Ray Data puts every read task (a chunk's index) in its object
#: store when the run starts, so their number is capped; below the cap a chunk is one batch
MAX_READ_TASKS = 20_000
#: batches handed out ahead of the results, per worker (Ray queues a few per actor)
WINDOW_BATCHES_PER_WORKER = 8
#: at least this many chunks in the window (more than the two read tasks running at once)
MIN_WINDOW_CHUNKS = 4


def chunk_batches(total: int, batch_size: int) -> int:
    """Batches per chunk (per read task): 1 (a block per batch, what a killed worker redoes)
    unless the run has more than :data:`MAX_READ_TASKS` batches."""
    batches = math.ceil(total / batch_size)
    return max(1, math.ceil(batches / MAX_READ_TASKS))


def window_chunks(workers: int, batches_per_chunk: int) -> int:
    """Chunks the driver hands out ahead of the results: enough to keep every worker busy,
    bounded so that the driver holds at most ``window_chunks × batches_per_chunk × batch_size``
    products (plus the chunk being read), whatever the input's size."""
    return max(MIN_WINDOW_CHUNKS, math.ceil(WINDOW_BATCHES_PER_WORKER * workers / batches_per_chunk))


def tag_on_ray(
    products: Iterable[Product],
    factory: TaggingFactory,
    *,
    total: int | None = None,
    workers: int | None = None,
    address: str | None = None,
    batch_size: int = 32,
    stats: RayRunStats | None = None,
) -> Iterator[tuple[list[Product], list[TagResult]]]:
    """Tag ``products`` on ``workers`` Ray actors (default: one per CPU of the cluster),
    yielding ``(products, results)`` as they complete, in input order. ``products`` is
    streamed (``total``: how many it yields, required unless it is a sequence): a feeder
    thread reads it a chunk at a time into a bounded :class:`agent.bulk.window.FeedWindow`,
    never more than its capacity ahead of the results. Ray started here (local mode, or a
    connection to ``address``) is shut down when the iterator ends or is closed."""
    if total is None:
        if not isinstance(products, Sequence):
            raise ValueError("tag_on_ray: total is required when products is a stream")
        total = len(products)
    if total == 0:
        return
    started = _connect(address, workers)
    window: FeedWindow[Product, TagResult] | None = None
    thread: threading.Thread | None = None
    try:
        import pyarrow as pa
        import ray
        import ray.data

        logging.getLogger("ray.data").setLevel(logging.WARNING)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # results in input order
        context.enable_progress_bars = False
        size = workers or cluster_cpus()
        per_chunk = chunk_batches(total, batch_size)
        chunk_size = batch_size * per_chunk
        feeder: Any = ray.remote(num_cpus=0, scheduling_strategy=_driver_node())(_Feeder).remote()
        window = FeedWindow(products, chunk_size=chunk_size, capacity=window_chunks(size, per_chunk))

        def push(index: int, chunk: list[Product]) -> None:
            start = index * chunk_size
            ray.get(feeder.put.remote(index, pa.table({
                "seq": pa.array(range(start, start + len(chunk)), pa.int64()),
                "product": [p.model_dump_json() for p in chunk],
            })))

        def feed(window: FeedWindow[Product, TagResult]) -> None:
            try:
                window.feed(push)
            except BaseException as exc:  # kept in the window for the consumer; the read tasks fail
                with contextlib.suppress(Exception):
                    ray.get(feeder.fail.remote(f"{type(exc).__name__}: {exc}"), timeout=30)

        thread = threading.Thread(target=feed, args=(window,), name="tag-on-ray-feeder", daemon=True)
        thread.start()
        with warnings.catch_warnings():
            # 2.60 warns that extra remote arguments (the bounded restarts) move to named
            # parameters in 2.64; the pin is 2.60, where this is the way to bound them
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            # the read tasks only wait for the feeder: no CPU, two at a time (the window
            # keeps them fed; more would hold idle worker processes)
            dataset = ray.data.read_datasource(
                _feed_source(feeder, total, chunk_size, batch_size),
                override_num_blocks=-(-total // chunk_size), num_cpus=0, concurrency=2,
            ).map_batches(
                _TagWorker,
                fn_constructor_args=(factory,),
                batch_size=batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=size),
                num_cpus=1,
                max_restarts=MAX_RESTARTS,
                max_task_retries=MAX_RESTARTS,
            )
        try:
            for out in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                columns: dict[str, Any] = dict(out)
                seqs = [int(s) for s in columns["seq"]]
                texts = [str(t) for t in columns["result"]]
                if stats is not None:
                    pids, nodes, rss = (columns[c].tolist() for c in ("pid", "node", "max_rss_mb"))
                    for i in range(len(seqs)):
                        stats.add(nodes[i], pids[i], 1, rss[i])
                done, results = window.deliver(seqs, [TagResult.model_validate_json(t) for t in texts],
                                               on_release=feeder.release.remote)
                if done:
                    yield done, results
        except Exception:
            window.check()  # the input's own failure (a changed file…) explains it best
            raise
        window.finish()
    finally:
        if window is not None:
            window.close()
        if thread is not None:
            thread.join(timeout=10)
        if started:
            import ray

            ray.shutdown()
