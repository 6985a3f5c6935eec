"""Bulk tagging throughput: one process vs Ray Data actors (``agent.bulk.ray_engine``, the
engine of ``tagsmith tag-file --engine ray``), hybrid pipeline (or ``rag`` through a vLLM
server), real MiniLM (fp32), on MWPD.

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

``--pipeline rag --llm-base-url URL`` tags with the ``rag`` pipeline (retrieval few-shot,
one constrained answer per product through the ``openai`` backend, ``generate`` mode): the
single process and every Ray worker talk to the same server(s) (several URLs, comma-separated,
are the endpoint pool), ``--llm-concurrency`` requests in flight per process. ``--llm-pid``
names the server's process (e.g. vLLM's, the child of ``tagsmith llm serve``): its peak RSS
and the CPU it spends during each engine's run are reported too. Before the engines run, a
warm-up batch goes through the server, and before each engine the server's prefix cache is
emptied (``POST /reset_prefix_cache``, which vLLM serves only with ``VLLM_SERVER_DEV_MODE=1``)
so that a later engine does not find the earlier one's prompts cached. At the end the parent
compares each engine's output with the first engine's, id by id::

    VLLM_SERVER_DEV_MODE=1 .venv/bin/tagsmith llm serve --model-dir models/smollm2-hf --port 8001 &
    # wait for the settings it prints, then:
    .venv/bin/python -m evals.benchmarks.ray_bulk --n 192 --batch-size 32 --pipeline rag \
        --llm-base-url http://127.0.0.1:8001/v1 --llm-pid "$(pgrep -P $!)"

Needs the ray extra (scripts/install-ray.sh).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.bulk.ray_engine import RayRunStats, max_rss_mb, tag_on_ray
from agent.contract import Product, TagResult
from agent.llm import LLMBackend, create_backend
from agent.tagger import LLM_PIPELINES, Tagger, TaggerConfig
from evals.benchmarks.proc_tree import tree_pids
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
    llm_base_urls: tuple[str, ...] = ()
    """The LLM pipelines' OpenAI-compatible server(s): several are the endpoint pool."""
    llm_concurrency: int = 32

    def __call__(self) -> MwpdTagger:
        snap = load_taxonomy(MWPD / "taxonomy.json", "json")
        pool = load_dataset(MWPD / "pool.jsonl")
        examples = [it.example(snap) for it in pool if it.gold_tags]

        def embedder() -> CachedEmbedder:
            return CachedEmbedder(SentenceTransformerEmbedder(), EmbeddingCache(self.cache_dir / "embeddings"))

        generator = build_generator(snap, examples, file_sha256(MWPD / "pool.jsonl"),
                                    embedder=embedder, cache_dir=self.cache_dir)
        llm: LLMBackend | None = None
        config = TaggerConfig(pipeline=self.pipeline)  # type: ignore[arg-type]
        if self.pipeline in LLM_PIPELINES:
            if not self.llm_base_urls:
                raise ValueError(f"pipeline {self.pipeline!r} needs --llm-base-url")
            # what `tagsmith llm serve` tells tagsmith to use; generate: a served model does not score
            llm = create_backend("openai", base_url=list(self.llm_base_urls), model="tagsmith",
                                 max_concurrency=self.llm_concurrency, timeout_s=120.0,
                                 structured_output="json_schema")
            config = TaggerConfig(pipeline=self.pipeline, llm_mode="generate")  # type: ignore[arg-type]
        return MwpdTagger(Tagger(generator, llm, config=config), llm)


class MwpdTagger:
    def __init__(self, tagger: Tagger, llm: LLMBackend | None = None) -> None:
        self.tagger = tagger
        self.llm = llm

    def tag_many(self, products: Sequence[Product]) -> list[TagResult]:
        return self.tagger.tag_many(products)

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()


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
    """The peak summed RSS of a process (default: this one) and all its descendants (Ray's
    processes and workers included), and the CPU time they used (each process's last sampled
    user + system time: on a shared machine CPU seconds per product are what stays comparable
    when wall time is stretched by other load), sampled from /proc. ``since_start``: count
    only the CPU time spent while sampling (for a process that was already running, such as
    an LLM server shared by several runs)."""

    def __init__(self, interval: float = 0.5, *, root: int | None = None, since_start: bool = False) -> None:
        self.root = os.getpid() if root is None else root
        self.peak_mb = 0.0
        self._cpu_ticks: dict[int, int] = {}
        self._base_ticks: dict[int, int] | None = {} if since_start else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def __enter__(self) -> RssSampler:
        if self._base_ticks is not None:
            _tree_rss_mb(self.root, self._base_ticks)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def cpu_s(self) -> float:
        base = self._base_ticks or {}
        ticks = sum(t - base.get(pid, 0) for pid, t in self._cpu_ticks.items())
        return ticks / os.sysconf("SC_CLK_TCK")

    def sample(self) -> None:
        self.peak_mb = max(self.peak_mb, _tree_rss_mb(self.root, self._cpu_ticks))

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(interval)


def _tree_rss_mb(root: int, cpu_ticks: dict[int, int]) -> float:
    total = 0
    for pid, pages, ticks in tree_pids(root):
        total += pages
        cpu_ticks[pid] = max(cpu_ticks.get(pid, 0), ticks)
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


def _local(products: list[Product], factory: MwpdTagging, batch_size: int) -> Iterator[tuple[list[Product], list[TagResult]]]:
    tagging = factory()
    try:
        for start in range(0, len(products), batch_size):
            batch = products[start : start + batch_size]
            yield batch, tagging.tag_many(batch)
    finally:
        tagging.close()


def reset_prefix_cache(base_urls: Sequence[str]) -> bool:
    """Empty each vLLM server's prefix cache (``POST /reset_prefix_cache``, served only
    with ``VLLM_SERVER_DEV_MODE=1``; it answers ``{"success": false}`` while requests run);
    False when a server does not offer it or did not reset."""
    ok = True
    for url in base_urls:
        root = url.rstrip("/").removesuffix("/v1")
        request = urllib.request.Request(f"{root}/reset_prefix_cache", data=b"", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                ok = ok and json.loads(resp.read() or b"{}").get("success") is True
        except (urllib.error.URLError, OSError, ValueError):
            ok = False
    return ok


def warm_up(factory: MwpdTagging, n: int) -> None:
    """Build (or check) the cached index once, outside the timings and the measured
    processes; for an LLM pipeline also send ``n`` products (MWPD dev records from the end
    of the file, not the first ones the catalog starts with) through the server, so that
    the first engine does not pay the server's first requests."""
    tagging = factory()
    try:
        if factory.pipeline in LLM_PIPELINES and n > 0:
            lines = (MWPD / "dev.jsonl").read_text(encoding="utf-8").splitlines()[-n:]
            records = [json.loads(line) for line in lines]
            tagging.tag_many([Product(id=f"warm{i}", title=r["title"][:1000] or "untitled",
                                      description=(r.get("description") or "")[:20000])
                              for i, r in enumerate(records)])
    finally:
        tagging.close()


def same_tags(reference: Path, other: Path) -> dict[str, Any]:
    """Compare two result files id by id: how many products got the same tags (ids, in
    order) and the same first tag, and the first differing ids."""
    def tags(path: Path) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            r = TagResult.model_validate_json(line)
            out[str(r.id)] = [t.id for t in r.tags]
        return out

    ref, oth = tags(reference), tags(other)
    common = [i for i in ref if i in oth]
    differ = [i for i in common if ref[i] != oth[i]]
    return {
        "products": len(common), "missing": len(ref) - len(common), "extra": len(oth) - len(common),
        "same_tags": len(common) - len(differ),
        "same_first_tag": sum(1 for i in common if ref[i][:1] == oth[i][:1]),
        "first_differing": [{"id": i, "reference": ref[i], "other": oth[i]} for i in differ[:3]],
    }


def run(engine: str, products: list[Product], factory: MwpdTagging, out: Path, batch_size: int,
        *, llm_pid: int | None = None) -> dict[str, Any]:
    out.unlink(missing_ok=True)
    stats = RayRunStats()
    started = time.perf_counter()
    first: float | None = None
    first_n = 0
    first_cpu_s = 0.0
    done = 0
    fallbacks = 0
    server_sampler = RssSampler(root=llm_pid, since_start=True) if llm_pid is not None else None
    with RssSampler() as sampler, contextlib.ExitStack() as stack:
        if server_sampler is not None:
            stack.enter_context(server_sampler)
        if engine == "local":
            batches = _local(products, factory, batch_size)
        else:
            batches = tag_on_ray(products, factory, workers=int(engine.removeprefix("ray")),
                                 batch_size=batch_size, stats=stats)
        for batch, results in batches:
            append_lines(out, [r.model_dump_json() + "\n" for r in results])
            fallbacks += sum(1 for r in results if r.evidence.llm.fallback_used)
            done += len(batch)
            if first is None:
                first, first_n = time.perf_counter(), done
                sampler.sample()
                first_cpu_s = sampler.cpu_s  # start-up: Ray, the workers' loading, one block
            if done == len(products):
                sampler.sample()  # the workers' last CPU time, before Ray shuts down
                if server_sampler is not None:
                    server_sampler.sample()
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
    if factory.pipeline in LLM_PIPELINES:
        row["llm_fallbacks"] = fallbacks
    if server_sampler is not None:
        row["llm_server_cpu_s"] = round(server_sampler.cpu_s, 1)
        row["llm_server_cpu_ms_per_product"] = round(1000 * server_sampler.cpu_s / max(1, done), 1)
        row["llm_server_peak_rss_mb"] = round(server_sampler.peak_mb)
    if engine != "local":
        row["worker_peak_rss_mb"] = sorted(round(w.max_rss_mb) for w in stats.workers.values())
        row["worker_processes"] = len(stats.workers)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="products to tag")
    ap.add_argument("--engines", default="local,ray1,ray2", help="local and/or rayN (N workers), comma-separated")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--pipeline", default="hybrid", choices=["hybrid", "rag"])
    ap.add_argument("--llm-base-url", default="",
                    help="rag: the OpenAI-compatible server, e.g. http://127.0.0.1:8001/v1 (several: comma-separated, the endpoint pool)")
    ap.add_argument("--llm-concurrency", type=int, default=32, help="rag: LLM requests in flight per process")
    ap.add_argument("--llm-pid", type=int, default=None,
                    help="the LLM server's process (its descendants included) to measure RSS and CPU of")
    ap.add_argument("--warm-up", type=int, default=32, help="rag: products sent to the server before the engines run")
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/tagsmith-ray-bulk"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    urls = tuple(u.strip() for u in args.llm_base_url.split(",") if u.strip())
    if args.pipeline in LLM_PIPELINES and not urls:
        ap.error(f"--pipeline {args.pipeline} needs --llm-base-url")
    factory = MwpdTagging(args.cache_dir, args.pipeline, urls, args.llm_concurrency)
    if args.prepare:
        warm_up(factory, args.warm_up)
        return
    src = catalog(args.n, args.work_dir)
    engines = args.engines.split(",")
    if args.child:  # one engine in a fresh process: its peak RSS is its own
        products = [Product.model_validate_json(line) for line in src.read_text(encoding="utf-8").splitlines()]
        row = run(args.engines, products, factory, _out(args.work_dir, args.pipeline, args.engines),
                  args.batch_size, llm_pid=args.llm_pid)
        row["load_avg_after"] = [round(x, 1) for x in os.getloadavg()]
        print(json.dumps(row), flush=True)
        return
    print(json.dumps({"machine": f"{os.cpu_count()} CPUs, {platform.machine()}",
                      "load_avg_before": [round(x, 1) for x in os.getloadavg()],
                      "n": args.n, "batch_size": args.batch_size, "pipeline": args.pipeline,
                      **({"llm_base_urls": list(urls), "llm_concurrency": args.llm_concurrency} if urls else {})}),
          flush=True)
    common = ["--n", str(args.n), "--batch-size", str(args.batch_size), "--cache-dir", str(args.cache_dir),
              "--work-dir", str(args.work_dir), "--pipeline", args.pipeline, "--llm-base-url", args.llm_base_url,
              "--llm-concurrency", str(args.llm_concurrency), "--warm-up", str(args.warm_up)]
    subprocess.run([sys.executable, "-m", "evals.benchmarks.ray_bulk", "--prepare", *common], check=True)
    for engine in engines:
        if urls:
            print(json.dumps({"engine": engine, "prefix_cache_reset": reset_prefix_cache(urls)}), flush=True)
        subprocess.run([sys.executable, "-m", "evals.benchmarks.ray_bulk", "--child", "--engines", engine, *common,
                        *(["--llm-pid", str(args.llm_pid)] if args.llm_pid is not None else [])], check=True)
    reference = _out(args.work_dir, args.pipeline, engines[0])
    for engine in engines[1:]:
        print(json.dumps({"engine": engine, "vs": engines[0],
                          **same_tags(reference, _out(args.work_dir, args.pipeline, engine))}), flush=True)


def _out(work_dir: Path, pipeline: str, engine: str) -> Path:
    return work_dir / f"out-{pipeline}-{engine}.jsonl"


if __name__ == "__main__":
    main()
