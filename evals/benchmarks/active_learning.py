"""Active learning on MWPD: which products should a reviewer label first?

Start from 1 tagged example per category of the pool (seeded), then rounds of 200 products
chosen from the rest of the pool, by the review queue's ordering
(:func:`agent.review_priority.order_for_review` over the default tagger's results on the
unlabelled pool) or at random (seeded); the chosen products get their gold label, the tagger
(``hybrid``) is re-fitted, and MWPD dev is scored (WAF1 with a 95% bootstrap CI) after every
round, up to 5,000 labels. The full pool is scored once as the reference::

    .venv/bin/python -m evals.benchmarks.active_learning            # full dev, ~25 rounds
    .venv/bin/python -m evals.benchmarks.active_learning --quick    # first 500 dev, to 1,400 labels

Writes ``results.json`` and ``active_learning.png`` under ``--out`` (default
``runs/active_learning``). Vectors come from the embedding cache under ``--cache-dir``
(default ``.cache/embeddings``; the first run encodes the 13k MWPD texts once).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evals import plots
from evals.dataset import load_dataset
from evals.few_labels import Round, Workbench, labels_to_reach, simulate, summary
from retrieval import CachedEmbedder, EmbeddingCache, SentenceTransformerEmbedder
from retrieval.durable import atomic_write_json
from taxonomy import load_taxonomy

REPO = Path(__file__).resolve().parents[2]
MWPD = REPO.parent / "shared" / "data" / "mwpd"


def say(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def mwpd_workbench(cache_dir: Path, *, dev_limit: int | None = None) -> Workbench:
    """MWPD pool + dev (the first ``dev_limit`` items), encoded once through the cache."""
    if not (MWPD / "pool.jsonl").is_file():
        raise SystemExit(f"MWPD data not found under {MWPD}")
    snap = load_taxonomy(MWPD / "taxonomy.json", "json")
    pool = load_dataset(MWPD / "pool.jsonl")
    dev = load_dataset(MWPD / "dev.jsonl", limit=dev_limit)
    embedder = CachedEmbedder(SentenceTransformerEmbedder(), EmbeddingCache(cache_dir))
    t0 = time.perf_counter()
    bench = Workbench.build(snap, pool, dev, embedder)
    say(f"vectors and n-gram counts of {len(bench.pool):,} pool + {len(dev):,} dev texts in {time.perf_counter() - t0:.0f}s "
        f"(cache hits {embedder.hits:,}, encoded {embedder.misses:,})")
    return bench


def machine() -> str:
    return f"{platform.machine()}, 2 shared CPU cores, python {platform.python_version()}"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="first 500 dev items, up to 1,400 labels, the queue scans 2,000 a round")
    ap.add_argument("--dev-limit", type=int, default=None, help="score the first N dev items (default all)")
    ap.add_argument("--max-labels", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=200, help="products reviewed per round")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (initial set, random picks)")
    ap.add_argument("--strategies", nargs="+", default=["queue", "random"], choices=["queue", "random"])
    ap.add_argument("--scan", type=int, default=None,
                    help="unlabelled products the queue tags and orders per round (a seeded sample; default all)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--no-full", action="store_true", help="skip the full-pool reference score")
    ap.add_argument("--combine", type=Path, nargs="+", default=None,
                    help="only merge the results.json of earlier runs (e.g. one process per strategy) "
                         "into --out, with the verdict and the plot")
    ap.add_argument("--cache-dir", type=Path, default=REPO / ".cache" / "embeddings")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "active_learning")
    args = ap.parse_args(argv)
    if args.quick:
        args.dev_limit = args.dev_limit or 500
        args.max_labels = min(args.max_labels, 1400)
        args.scan = args.scan or 2000
    if args.combine:
        return combine(args.combine, args.out)
    started = time.perf_counter()
    bench = mwpd_workbench(args.cache_dir, dev_limit=args.dev_limit)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "benchmark": "active_learning", "date": f"{datetime.now(UTC):%Y-%m-%d}", "machine": machine(),
        "dataset": "MWPD dev" + (f" (first {args.dev_limit})" if args.dev_limit else ""),
        "pool": len(bench.pool), "batch": args.batch, "max_labels": args.max_labels,
        "seeds": args.seeds, "scan": args.scan, "curves": {},
    }
    if not args.no_full:
        t0 = time.perf_counter()
        full = bench.score(bench.tagger(list(range(len(bench.pool)))).tag_many(bench.eval_products()),
                           n_boot=args.n_boot)
        results["full_pool"] = {"labels": len(bench.pool), **summary(full)}
        say(f"full pool ({len(bench.pool):,} labels): WAF1 {full['waf1']:.2f} ({time.perf_counter() - t0:.0f}s)")
    for seed in args.seeds:
        for strategy in args.strategies:
            name = f"{strategy}/{seed}"

            def save(rounds: list[Round], name: str = name) -> None:  # a partial run keeps what it did
                results["curves"][name] = [r.as_json() for r in rounds]
                results["wall_s"] = round(time.perf_counter() - started, 1)
                atomic_write_json(args.out / "results.json", results)

            simulate(bench, strategy, batch=args.batch, max_labels=args.max_labels, seed=seed,
                     n_boot=args.n_boot, scan=args.scan, progress=say, on_round=save)
    return finish(results, args.out)


def finish(results: dict[str, Any], out: Path) -> dict[str, Any]:
    """Add the verdict and the plot (when the full-pool reference is known) and write."""
    if "full_pool" in results:
        results["verdict"] = verdict(results)
        results["plot"] = str(out / plot(results, out / "active_learning.png"))
        say(json.dumps(results["verdict"], indent=1))
    atomic_write_json(out / "results.json", results)
    return results


def combine(paths: Sequence[Path], out: Path) -> dict[str, Any]:
    """Merge the results of several runs (same data and settings, other strategies/seeds)."""
    docs = [json.loads((p / "results.json" if p.is_dir() else p).read_text(encoding="utf-8")) for p in paths]
    merged: dict[str, Any] = {**docs[0], "curves": {}, "seeds": []}
    for doc in docs:
        merged["curves"].update(doc["curves"])
        merged["seeds"] = sorted({*merged["seeds"], *doc["seeds"]})
        if "full_pool" in doc:
            merged["full_pool"] = doc["full_pool"]
        merged["wall_s"] = max(float(merged.get("wall_s") or 0), float(doc.get("wall_s") or 0))
    out.mkdir(parents=True, exist_ok=True)
    return finish(merged, out)


def verdict(results: dict[str, Any]) -> dict[str, Any]:
    """The acceptance figures: does the queue beat random at every round (per seed), labels
    to reach 80 WAF1 and to come within 1 point of the full pool, per curve."""
    full = float(results["full_pool"]["waf1"])
    curves: dict[str, list[dict[str, Any]]] = results["curves"]
    out: dict[str, Any] = {"full_pool_waf1": full, "within_1_target": round(full - 1.0, 3), "curves": {}}
    for name, rounds in curves.items():
        out["curves"][name] = {
            "labels_to_80": labels_to_reach(rounds, 80.0),
            "labels_to_full_minus_1": labels_to_reach(rounds, full - 1.0),
            "final": rounds[-1]["waf1"] if rounds else None,
        }
    for seed in results["seeds"]:
        queue, rand = curves.get(f"queue/{seed}"), curves.get(f"random/{seed}")
        if queue and rand:
            gaps = [round(q["waf1"] - r["waf1"], 3) for q, r in zip(queue, rand, strict=False)
                    if q["labels"] == r["labels"]]
            # round 0 is the same initial set for both: "beats" is judged from round 1 on
            out[f"queue_minus_random/{seed}"] = gaps
            out[f"queue_beats_random_every_round/{seed}"] = all(g > 0 for g in gaps[1:])
    return out


def plot(results: dict[str, Any], path: Path) -> str:
    series = {name: [(r["labels"], r["waf1"], r["waf1_ci95"]) for r in rounds]
              for name, rounds in results["curves"].items()}
    full = results["full_pool"]
    return plots.score_curves(
        series, path, xlabel="reviewed labels (initial 1 per category + rounds of "
        f"{results['batch']})", title=f"Active learning on {results['dataset']}: queue ordering vs random",
        references={f"full pool, {full['labels']:,} labels": full["waf1"], "80 WAF1": 80.0},
    )


if __name__ == "__main__":
    main()
