"""Bulk tagging on Ray Data: the same tagging code, a pool of actors that each build it once.

``map_batches`` runs :class:`_TagWorker` actors: each calls the :data:`TaggingFactory` once
(embedder, example index, lexical model, LLM client) and then tags batch after batch. The
driver (this process) keeps the products and receives the results **in input order**
(``preserve_order``: a block that finishes early waits for the ones before it), so a caller
that appends each batch as it arrives writes the same file, line for line, as the
single-process path.

Exactly once across crashes is the caller's append-and-resume (:mod:`retrieval.durable`):
only the driver writes, a batch at a time, fsynced; a killed driver leaves complete lines
(and at most one torn line, cut on resume), and a re-run skips the ids written. A killed
worker loses nothing that was written: Ray restarts the actor (``max_restarts``) and re-runs
its unfinished batches (``max_task_retries``); their results reach the driver once, because
only a finished task's output is delivered.

Local mode (no ``address``) starts a private Ray instance with ``workers`` CPUs and a small
object store; ``address="auto"`` joins a running cluster, ``"ray://host:10001"`` goes
through Ray Client. On a cluster every worker builds its tagging from the same settings, so
the data directory must be readable there (shared storage or a copy).

``ray`` is an optional extra (``pip install 'tagsmith[ray]'``): imported only here, lazily.
"""

from __future__ import annotations

import logging
import os
import resource
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.bulk.source import BatchTagging, TaggingFactory
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


def tag_on_ray(
    products: Sequence[Product],
    factory: TaggingFactory,
    *,
    workers: int | None = None,
    address: str | None = None,
    batch_size: int = 32,
    stats: RayRunStats | None = None,
) -> Iterator[tuple[list[Product], list[TagResult]]]:
    """Tag ``products`` on ``workers`` Ray actors (default: one per CPU of the cluster),
    yielding ``(products, results)`` a block at a time, in input order. Ray started here
    (local mode, or a connection to ``address``) is shut down when the iterator ends or is
    closed."""
    if not products:
        return
    started = _connect(address, workers)
    try:
        import pyarrow as pa
        import ray
        import ray.data

        logging.getLogger("ray.data").setLevel(logging.WARNING)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # results in input order
        context.enable_progress_bars = False
        size = workers or cluster_cpus()
        # one block per batch: a block is what a worker tags in one task, what a crash redoes
        # and what the driver receives at once
        blocks = [
            pa.table({
                "seq": pa.array(range(start, min(start + batch_size, len(products))), pa.int64()),
                "product": [p.model_dump_json() for p in products[start : start + batch_size]],
            })
            for start in range(0, len(products), batch_size)
        ]
        with warnings.catch_warnings():
            # 2.60 warns that extra remote arguments (the bounded restarts) move to named
            # parameters in 2.64; the pin is 2.60, where this is the way to bound them
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            dataset = ray.data.from_arrow(blocks).map_batches(
                _TagWorker,
                fn_constructor_args=(factory,),
                batch_size=batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=size),
                num_cpus=1,
                max_restarts=MAX_RESTARTS,
                max_task_retries=MAX_RESTARTS,
            )
        for out in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            columns: dict[str, Any] = dict(out)
            seqs = [int(s) for s in columns["seq"]]
            texts = [str(t) for t in columns["result"]]
            if stats is not None:
                pids, nodes, rss = (columns[c].tolist() for c in ("pid", "node", "max_rss_mb"))
                for i in range(len(seqs)):
                    stats.add(nodes[i], pids[i], 1, rss[i])
            yield [products[s] for s in seqs], [TagResult.model_validate_json(t) for t in texts]
    finally:
        if started:
            import ray

            ray.shutdown()
