"""Bulk tagging throughput: one process vs Ray Data actors (``agent.bulk.ray_engine``, the
engine of ``tagsmith tag-file --engine ray``), hybrid pipeline, real MiniLM (fp32), on MWPD.

The tagger is the eval runner's (``evals.runner.build_generator``): the 10,012-product MWPD
pool as the example index and lexical classifier (cached under ``--cache-dir`` after the first
run), the MWPD taxonomy. The products to tag are MWPD records (dev, then pool) repeated with
fresh ids, written at run time to ``--work-dir`` (never into the repository), and their
results are appended durably as ``tag-file`` does (``retrieval.durable.append_lines``).

For each engine: products/s over the whole run (start-up included: Ray's start, each worker
loading the runtime) and over the tagging alone (from the first result), the driver's peak
RSS, each worker's peak RSS (``ru_maxrss``, reported by the worker itself), and the peak of
all processes together (driver + Ray's own + workers, sampled from /proc every 0.5 s).

    .venv/bin/python -m evals.benchmarks.ray_bulk --n 2000 --engines local,ray1,ray2
    .venv/bin/python -m evals.benchmarks.ray_bulk --n 100000 --engines ray2   # the big run

Needs the ray extra (scripts/install-ray.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.bulk.ray_engine import RayRunStats, max_rss_mb, tag_on_ray
from agent.contract import Product, TagResult
from agent.tagger import Tagger, TaggerConfig
from evals.dataset import file_sha256, load_dataset
from evals.runner import build_generator
from retrieval import CachedEmbedder, EmbeddingCache, SentenceTransformerEmbedder
from retrieval.durable import append_lines
from taxonomy import load_taxonomy

REPO = Path(__file__).resolve().parents[2]
MWPD = REPO.parent / "shared" / "data" / "mwpd"
DEFAULT_CACHE = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "tagsmith" / "cache" / "evals"


@dataclass(frozen=True)
class MwpdTagging:
    """Picklable: each Ray worker (and the single process) builds the hybrid tagger once."""

    cache_dir: Path
    pipeline: str = "hybrid"

    def __call__(self) -> MwpdTagger:
        snap = load_taxonomy(MWPD / "taxonomy.json", "json")
        pool = load_dataset(MWPD / "pool.jsonl")
        examples = [it.example(snap) for it in pool if it.gold_tags]

        def embedder() -> CachedEmbedder:
            return CachedEmbedder(SentenceTransformerEmbedder(), EmbeddingCache(self.cache_dir / "embeddings"))

        generator = build_generator(snap, examples, file_sha256(MWPD / "pool.jsonl"),
                                    embedder=embedder, cache_dir=self.cache_dir)
        return MwpdTagger(Tagger(generator, None, config=TaggerConfig(pipeline=self.pipeline)))  # type: ignore[arg-type]


class MwpdTagger:
    def __init__(self, tagger: Tagger) -> None:
        self.tagger = tagger

    def tag_many(self, products: Sequence[Product]) -> list[TagResult]:
        return self.tagger.tag_many(products)

    def close(self) -> None:
        pass


def catalog(n: int, work_dir: Path) -> Path:
    """``n`` MWPD products (dev then pool, repeated), each with a fresh id, as JSONL."""
    path = work_dir / f"mwpd-{n}.jsonl"
    if path.exists():
        return path
    records = [json.loads(line) for name in ("dev.jsonl", "pool.jsonl")
               for line in (MWPD / name).read_text(encoding="utf-8").splitlines()]
    records = [r for r in records if (r.get("title") or "").strip()]
    lines = []
    for i in range(n):
        r = records[i % len(records)]
        lines.append(json.dumps({"id": f"p{i:08d}", "title": r["title"][:1000], "description": (r.get("description") or "")[:20000]}) + "\n")
    work_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.replace(path)
    return path


class RssSampler:
    """The peak summed RSS of this process and all its descendants (Ray's processes and
    workers included), and the CPU time they used (each process's last sampled user +
    system time: on a shared machine CPU seconds per product are what stays comparable
    when wall time is stretched by other load), sampled from /proc."""

    def __init__(self, interval: float = 0.5) -> None:
        self.peak_mb = 0.0
        self._cpu_ticks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def cpu_s(self) -> float:
        return sum(self._cpu_ticks.values()) / os.sysconf("SC_CLK_TCK")

    def sample(self) -> None:
        self.peak_mb = max(self.peak_mb, _tree_rss_mb(os.getpid(), self._cpu_ticks))

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(interval)


def _tree_rss_mb(root: int, cpu_ticks: dict[int, int]) -> float:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(stat[1]), []).append(int(entry))
        rss[int(entry)] = int(stat[21])  # pages
        ticks[int(entry)] = int(stat[11]) + int(stat[12])  # utime + stime
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        cpu_ticks[pid] = max(cpu_ticks.get(pid, 0), ticks.get(pid, 0))
        todo.extend(children.get(pid, []))
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


def _local(products: list[Product], factory: MwpdTagging, batch_size: int) -> Iterator[tuple[list[Product], list[TagResult]]]:
    tagging = factory()
    for start in range(0, len(products), batch_size):
        batch = products[start : start + batch_size]
        yield batch, tagging.tag_many(batch)


def run(engine: str, products: list[Product], factory: MwpdTagging, out: Path, batch_size: int) -> dict[str, Any]:
    out.unlink(missing_ok=True)
    stats = RayRunStats()
    started = time.perf_counter()
    first: float | None = None
    first_n = 0
    first_cpu_s = 0.0
    done = 0
    with RssSampler() as sampler:
        if engine == "local":
            batches = _local(products, factory, batch_size)
        else:
            batches = tag_on_ray(products, factory, workers=int(engine.removeprefix("ray")),
                                 batch_size=batch_size, stats=stats)
        for batch, results in batches:
            append_lines(out, [r.model_dump_json() + "\n" for r in results])
            done += len(batch)
            if first is None:
                first, first_n = time.perf_counter(), done
                sampler.sample()
                first_cpu_s = sampler.cpu_s  # start-up: Ray, the workers' loading, one block
            if done == len(products):
                sampler.sample()  # the workers' last CPU time, before Ray shuts down
        wall = time.perf_counter() - started
    tagging_s = time.perf_counter() - started - (first - started if first is not None else 0.0)
    row: dict[str, Any] = {
        "engine": engine, "products": done, "wall_s": round(wall, 1),
        "products_per_s": round(done / wall, 1),
        "tagging_products_per_s": round((done - first_n) / tagging_s, 1) if tagging_s > 0 and done > first_n else None,
        "cpu_s": round(sampler.cpu_s, 1),
        "cpu_ms_per_product": round(1000 * sampler.cpu_s / max(1, done), 1),
        "cpu_s_to_first_result": round(first_cpu_s, 1),
        "tagging_cpu_ms_per_product": round(1000 * (sampler.cpu_s - first_cpu_s) / max(1, done - first_n), 1),
        "driver_peak_rss_mb": round(max_rss_mb()),
        "all_processes_peak_rss_mb": round(sampler.peak_mb),
    }
    if engine != "local":
        row["worker_peak_rss_mb"] = sorted(round(w.max_rss_mb) for w in stats.workers.values())
        row["worker_processes"] = len(stats.workers)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="products to tag")
    ap.add_argument("--engines", default="local,ray1,ray2", help="local and/or rayN (N workers), comma-separated")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/tagsmith-ray-bulk"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    src = catalog(args.n, args.work_dir)
    factory = MwpdTagging(args.cache_dir)
    if args.child:  # one engine in a fresh process: its peak RSS is its own
        products = [Product.model_validate_json(line) for line in src.read_text(encoding="utf-8").splitlines()]
        row = run(args.engines, products, factory, args.work_dir / f"out-{args.engines}.jsonl", args.batch_size)
        row["load_avg_after"] = [round(x, 1) for x in os.getloadavg()]
        print(json.dumps(row), flush=True)
        return
    print(json.dumps({"machine": f"{os.cpu_count()} CPUs, {platform.machine()}",
                      "load_avg_before": [round(x, 1) for x in os.getloadavg()],
                      "n": args.n, "batch_size": args.batch_size}), flush=True)
    # builds (or checks) the cached index once, outside the timings and the measured processes
    subprocess.run([sys.executable, "-c", "from evals.benchmarks.ray_bulk import MwpdTagging as M; import sys; "
                    "M(__import__('pathlib').Path(sys.argv[1]))()", str(args.cache_dir)], check=True)
    for engine in args.engines.split(","):
        subprocess.run([sys.executable, "-m", "evals.benchmarks.ray_bulk", "--child", "--engines", engine,
                        "--n", str(args.n), "--batch-size", str(args.batch_size), "--cache-dir", str(args.cache_dir),
                        "--work-dir", str(args.work_dir)], check=True)


if __name__ == "__main__":
    main()
