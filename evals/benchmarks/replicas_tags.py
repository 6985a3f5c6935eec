"""``POST /v1/tags`` throughput of 1 vs 3 ``tagsmith serve`` replicas on one machine: loopback,
one PostgreSQL, the default hybrid pipeline with the packaged MiniLM, the MWPD taxonomy and
its 10,012-product pool as the example index (issue 21's acceptance figure).

Everything goes through the command line and HTTP (evals does not import the service):

1. a throw-away PostgreSQL on a loopback port (``tests/postgres_server.py``, durable: fsync
   on), or ``--database-url`` (an empty database);
2. bootstrap once, as an operator would: ``tagsmith db upgrade``, ``tagsmith taxonomy import
   json`` (MWPD's 396 GPC nodes), ``tagsmith index build --examples`` (the pool, gold leaves as
   tags: embedded, the lexical classifier trained, calibrated, published into the database).
   ``--seed-cache`` (default: the eval runner's cached MWPD index, when present) fills the
   bootstrap data directory's embedding cache with those examples' vectors first, so the
   build skips re-encoding 10,012 texts; it changes nothing else (same model, same texts);
3. per phase (``--phases``: ``1``, ``3``; ``3t1`` = 3 replicas with torch/OpenMP/BLAS limited
   to one thread each), N replicas started on fresh, empty data directories (no embedding
   cache from the bootstrap: every product is encoded), each loading the generation from the
   database; a warm-up of ``--warmup`` products per replica (not counted);
4. per request shape (``--modes``: ``single`` = ``POST /v1/tags``, ``batch16`` =
   ``POST /v1/tags:batch`` with 16 products) and concurrency (``--concurrency``): ``--n``
   MWPD products (dev, then pool; a slice of its own for every run of a phase, so no
   product is ever tagged twice by a replica) sent by C concurrent clients (one asyncio
   loop, keep-alive connections), request i to replica i mod N (round-robin, as a load
   balancer would). Reported: products/s (n / wall time of the run), request latency
   p50/p95, errors (anything but a 200 with one result per product; must be 0), CPU seconds
   per product of the replicas and of this client (from /proc: the client shares the cores),
   peak RSS per replica and in total (process trees, sampled every 0.25 s), and the load
   average before and after.

The per-key rate limit is raised for the run (one benchmark key sends everything; the
default 50 requests/s per replica would measure the limiter). Every process started is
stopped at the end (SIGTERM, then SIGKILL after a bounded wait).

Usage::

    .venv/bin/python -m evals.benchmarks.replicas_tags --n 2000 --phases 1,3,3t1@32   # ~30 min on 2 cores
    .venv/bin/python -m evals.benchmarks.replicas_tags --n 8 --pool-limit 300 \\
        --phases 1,3 --concurrency 4 --warmup 2                                  # a dry run (~5 min)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from evals.benchmarks.proc_tree import tree_pids
from evals.dataset import load_dataset
from retrieval import EmbeddingCache, IndexStore, RetrievalError
from retrieval.examples import examples_to_jsonl
from taxonomy import load_taxonomy

REPO = Path(__file__).resolve().parents[2]
MWPD = REPO.parent / "shared" / "data" / "mwpd"
TAGSMITH = str(Path(sys.executable).parent / "tagsmith")
ADMIN = "bench-admin-" + "Rq5w" * 10
#: the eval runner's cache (``evals.runner.cached_bundle``): the MWPD pool embedded by MiniLM
EVAL_CACHE = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "tagsmith" / "cache" / "evals"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
STOP_WAIT_S = 30
READY_TIMEOUT_S = 900


# ---- products --------------------------------------------------------------------------------
def mwpd_products() -> list[dict[str, str]]:
    """MWPD dev then pool records as ``POST /v1/tags`` bodies (title, description, the shop's
    breadcrumb), within the API's field limits."""
    out = []
    for name in ("dev.jsonl", "pool.jsonl"):
        for item in load_dataset(MWPD / name):
            out.append({"id": item.id, "title": (item.title or "").strip()[:1000] or "-",
                        "description": (item.description or "")[:20000],
                        "category_text": (item.category_text or "")[:1000]})
    return out


def write_examples(path: Path, limit: int | None) -> int:
    """The MWPD pool as index examples (gold leaves as tags), JSONL, outside the repository."""
    snap = load_taxonomy(MWPD / "taxonomy.json", "json")
    examples = [it.example(snap) for it in load_dataset(MWPD / "pool.jsonl", limit=limit) if it.gold_tags]
    path.write_text(examples_to_jsonl(examples), encoding="utf-8")
    return len(examples)


def seed_embedding_cache(source: Path, data_dir: Path) -> int:
    """Copy the vectors of a cached MWPD index (any generation store under ``source``) into
    ``data_dir``'s embedding cache, keyed by the same model name and example text as
    ``tagsmith index build`` looks them up: the build then encodes only what is missing."""
    best: tuple[int, IndexStore, str, int] | None = None
    for root in sorted(source.iterdir()) if source.is_dir() else []:
        store = IndexStore(root)  # readers take no lock and write nothing
        try:
            manifest = store.manifest()
        except RetrievalError:
            continue
        if best is None or manifest.count > best[0]:
            best = (manifest.count, store, manifest.embedder, manifest.dim)
    if best is None:
        return 0
    _, store, embedder, dim = best
    index, _lexical, _manifest = store.load_bundle(embedder=embedder, dim=dim)
    examples = list(index)
    cache = EmbeddingCache(data_dir / "cache" / "embeddings")
    try:
        for start in range(0, len(examples), 1000):
            chunk = examples[start : start + 1000]
            cache.put_many(embedder, [ex.text() for ex in chunk], np.stack([index.vector(ex.id).reshape(-1) for ex in chunk]))
    finally:
        cache.close()
    return len(examples)


# ---- processes -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_stats(root: int) -> tuple[float, float]:
    """RSS (MiB) and CPU seconds (user + system) of ``root`` and its descendants, from /proc."""
    found = tree_pids(root)
    pages, cpu = sum(r for _, r, _ in found), sum(t for _, _, t in found)
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20, cpu / os.sysconf("SC_CLK_TCK")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, a bounded wait, then SIGKILL."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_WAIT_S)


@dataclass
class Replica:
    name: str
    data_dir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    peak_rss_mb: float = 0.0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.name}.log"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [TAGSMITH, "serve", "--port", str(self.port)],
                env={**os.environ, **self.env, "TAGSMITH_DATA_DIR": str(self.data_dir)},
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/readyz", timeout=30).status_code == 200:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} was not ready in {timeout:.0f} s: see {self.log_path}")

    def stats(self) -> tuple[float, float]:
        return tree_stats(self.proc.pid) if self.proc is not None else (0.0, 0.0)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


class RssSampler:
    """Each replica's peak process-tree RSS while inside (every ``interval`` s)."""

    def __init__(self, replicas: Sequence[Replica], interval: float = 0.25) -> None:
        self.replicas = replicas
        self.peak_total_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            total = 0.0
            for replica in self.replicas:
                rss = replica.stats()[0]
                replica.peak_rss_mb = max(replica.peak_rss_mb, rss)
                total += rss
            self.peak_total_mb = max(self.peak_total_mb, total)
            self._stop.wait(interval)


def cli(args: Sequence[str], env: dict[str, str], log: Path, timeout: float = 1800) -> float:
    """Run ``tagsmith ARGS``; the seconds it took (raises with the log's tail on a failure)."""
    started = time.monotonic()
    with log.open("ab") as out:
        out.write(f"$ tagsmith {' '.join(args)}\n".encode())
        out.flush()
        done = subprocess.run([TAGSMITH, *args], env={**os.environ, **env}, cwd=REPO, stdout=out,
                              stderr=subprocess.STDOUT, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"tagsmith {' '.join(args)} failed ({done.returncode}):\n{log.read_text()[-3000:]}")
    return time.monotonic() - started


# ---- load ------------------------------------------------------------------------------------
def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def requests_of(products: Sequence[dict[str, str]], batch: int) -> list[tuple[str, dict[str, Any], int]]:
    """(path, body, products in it) for each request."""
    if batch <= 1:
        return [("/v1/tags", p, 1) for p in products]
    return [("/v1/tags:batch", {"products": list(products[i : i + batch])}, len(products[i : i + batch]))
            for i in range(0, len(products), batch)]


async def _send(bases: Sequence[str], requests: Sequence[tuple[str, dict[str, Any], int]],
                concurrency: int) -> tuple[list[float], dict[str, int]]:
    """Send ``requests`` from ``concurrency`` clients, request i to ``bases[i % len]``;
    latencies (ms) of the good ones and a count of the errors by kind."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(requests)):
        queue.put_nowait(i)
    headers = {"Authorization": f"Bearer {ADMIN}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=600) as client:

        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                path, body, count = requests[i]
                t0 = time.perf_counter()
                try:
                    response = await client.post(bases[i % len(bases)] + path, json=body)
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                elapsed = (time.perf_counter() - t0) * 1000
                if response.status_code != 200:
                    errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
                    continue
                answer = response.json()
                results = answer.get("results", [answer])
                if len(results) != count or any(not isinstance(r.get("tags"), list) for r in results):
                    errors["incomplete"] = errors.get("incomplete", 0) + 1
                    continue
                latencies.append(elapsed)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


def load_avg() -> list[float]:
    return [round(x, 1) for x in os.getloadavg()]


def measure(replicas: Sequence[Replica], products: Sequence[dict[str, str]], batch: int,
            concurrency: int) -> dict[str, Any]:
    requests = requests_of(products, batch)
    bases = [r.base for r in replicas]
    before = load_avg()
    cpu0 = [r.stats()[1] for r in replicas]
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    for r in replicas:
        r.peak_rss_mb = 0.0
    with RssSampler(replicas) as sampler:
        t0 = time.perf_counter()
        latencies, errors = asyncio.run(_send(bases, requests, concurrency))
        wall = time.perf_counter() - t0
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu = sum(r.stats()[1] - c for r, c in zip(replicas, cpu0, strict=True))
    client_cpu = (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime)
    return {
        "mode": "single" if batch <= 1 else f"batch{batch}", "concurrency": concurrency,
        "products": len(products), "requests": len(requests), "wall_s": round(wall, 1),
        "products_per_s": round(len(products) / wall, 1),
        "latency_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
        "latency_ms_p95": round(pct(latencies, 0.95), 1) if latencies else None,
        "errors": sum(errors.values()), "error_kinds": errors,
        "replicas_cpu_ms_per_product": round(1000 * server_cpu / len(products), 1),
        "client_cpu_ms_per_product": round(1000 * client_cpu / len(products), 1),
        "peak_rss_mb_per_replica": [round(r.peak_rss_mb) for r in replicas],
        "peak_rss_mb_total": round(sampler.peak_total_mb),
        "load_avg_before": before, "load_avg_after": load_avg(),
    }


# ---- the run ---------------------------------------------------------------------------------
@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from tests.postgres_server import postgres_server  # the test tier's throw-away server

    with postgres_server(durable=True) as server:
        yield server.url()


def parse_mode(mode: str) -> int:
    if mode == "single":
        return 1
    if mode.startswith("batch") and mode[5:].isdigit():
        return int(mode[5:])
    raise SystemExit(f"unknown mode {mode!r}: single or batchN")


def parse_phase(phase: str, concurrency: list[int]) -> tuple[int, bool, list[int]]:
    """``3`` -> 3 replicas, default threads, ``--concurrency``; ``3t1`` -> one thread per
    replica; ``3t1@32`` (or ``@8+32``) -> these concurrencies for this phase only."""
    spec, _, own = phase.partition("@")
    count, _, threads = spec.partition("t")
    if not count.isdigit() or threads not in ("", "1") or not all(c.isdigit() for c in own.split("+") if own):
        raise SystemExit(f"unknown phase {phase!r}: N, Nt1, optionally @C or @C+C")
    return int(count), threads == "1", [int(c) for c in own.split("+")] if own else concurrency


def emit(row: dict[str, Any], results: Path) -> None:
    line = json.dumps(row)
    print(line, flush=True)
    with results.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def run(args: argparse.Namespace, work: Path) -> None:
    results = work / "results.jsonl"
    products = mwpd_products()
    modes = [parse_mode(m) for m in args.modes.split(",")]
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    phases = [parse_phase(p, concurrencies) for p in args.phases.split(",")]
    runs_per_phase = len(modes) * max(len(c) for _, _, c in phases)
    warm_n = args.warmup
    needed = runs_per_phase * args.n + warm_n * 3
    if needed > len(products):
        raise SystemExit(f"{needed} distinct products needed per phase, MWPD has {len(products)}")
    warm = products[len(products) - warm_n * 3 :]
    emit({"machine": f"{os.cpu_count()} CPUs, {platform.machine()}", "load_avg_start": load_avg(),
          "n": args.n, "modes": args.modes, "concurrency": args.concurrency, "phases": args.phases}, results)
    with database(args.database_url) as url:
        env = {"TAGSMITH_DATABASE_URL": url, "TAGSMITH_AUTH__ADMIN_KEY": ADMIN, "TAGSMITH_LOG_LEVEL": "warning",
               "TAGSMITH_TAGGING__PIPELINE": "hybrid",
               "TAGSMITH_LIMITS__RATE_PER_S": "1000000", "TAGSMITH_LIMITS__RATE_BURST": "1000000"}
        boot = work / "bootstrap"
        boot.mkdir()
        boot_env = {**env, "TAGSMITH_DATA_DIR": str(boot)}
        log = work / "bootstrap.log"
        examples = work / "mwpd-pool-examples.jsonl"
        count = write_examples(examples, args.pool_limit)
        seeded = seed_embedding_cache(args.seed_cache, boot) if args.seed_cache else 0
        steps = {
            "db_upgrade_s": cli(["db", "upgrade"], boot_env, log),
            "taxonomy_import_s": cli(["taxonomy", "import", "json", str(MWPD / "taxonomy.json")], boot_env, log),
            "index_build_s": cli(["index", "build", "--examples", str(examples), "--taxonomy",
                                  str(MWPD / "taxonomy.json"), "--taxonomy-format", "json"], boot_env, log),
        }
        emit({"bootstrap": {"examples": count, "cache_seeded": seeded, **{k: round(v, 1) for k, v in steps.items()}},
              "load_avg": load_avg()}, results)
        for p, (n, one_thread, phase_concurrency) in enumerate(phases):
            phase_env = {**env, **(ONE_THREAD if one_thread else {})}
            replicas = [Replica(f"p{p}-r{i}", work / f"p{p}" / f"r{i}", phase_env) for i in range(n)]
            try:
                started = time.monotonic()
                for r in replicas:
                    r.start()
                for r in replicas:
                    r.wait_ready()
                ready_s = time.monotonic() - started
                rss_ready = [round(r.stats()[0]) for r in replicas]
                t0 = time.monotonic()
                for r in replicas:  # warm-up, not counted: every replica, both request shapes
                    asyncio.run(_send([r.base], requests_of(warm[:warm_n], 1) + requests_of(warm[warm_n:], 16), 2))
                warmup_s = time.monotonic() - t0
                slice_no = 0
                for batch in modes:
                    for concurrency in phase_concurrency:
                        chunk = products[slice_no * args.n : (slice_no + 1) * args.n]
                        slice_no += 1
                        row = measure(replicas, chunk, batch, concurrency)
                        emit({"replicas": n, "threads_per_replica": 1 if one_thread else "default (torch: cores)",
                              "ready_s": round(ready_s, 1), "rss_mb_ready": rss_ready,
                              "warmup_s": round(warmup_s, 1), **row}, results)
            finally:
                for r in replicas:
                    r.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="products per measured run")
    parser.add_argument("--modes", default="single,batch16", help="single and/or batchN, comma-separated")
    parser.add_argument("--concurrency", default="8,32", help="concurrent clients, comma-separated")
    parser.add_argument("--phases", default="1,3",
                        help="replica counts, comma-separated; Nt1: one thread per replica; @C+C: own concurrencies")
    parser.add_argument("--warmup", type=int, default=16, help="products per replica before measuring")
    parser.add_argument("--pool-limit", type=int, default=None, help="index only the first K pool products (dry runs)")
    parser.add_argument("--database-url", default=None, help="an empty database (default: a throw-away PostgreSQL)")
    parser.add_argument("--seed-cache", type=Path, default=EVAL_CACHE / "indexes",
                        help="cached MWPD index generations whose vectors pre-fill the bootstrap's embedding cache")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, results)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)  # stopped from outside: clean up as on Ctrl-C
    work = Path(tempfile.mkdtemp(prefix="tagsmith-replbench-"))
    print(f"work directory: {work}", file=sys.stderr, flush=True)
    ok = False
    try:
        run(args, work)
        ok = True
    finally:
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs and results kept in {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
