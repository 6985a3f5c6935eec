"""Learning curve on MWPD: WAF1 on dev vs tagged examples per category.

For k = 0, 1, 3, 10, 30 examples per category (a seeded subset of the pool; a category
with fewer keeps all of its examples) and the whole pool, the default pipeline (``hybrid``)
is fitted on the subset and scored on MWPD dev (WAF1 with a 95% bootstrap CI). k = 0 is the
taxonomy alone (taxonomy search; ``zero-shot`` for the LLM). The LLM pipeline (``rag``,
embedded llama.cpp SmolLM2, seconds per item) is scored on the first ``--llm-items`` dev items
at the ``--llm-points`` only, beside ``hybrid`` on the same items::

    .venv/bin/python -m evals.benchmarks.learning_curve                       # hybrid, full dev
    .venv/bin/python -m evals.benchmarks.learning_curve --llm-points 0 3 all  # + rag/zero-shot
    .venv/bin/python -m evals.benchmarks.learning_curve --quick               # first 500 dev

Writes ``results.json`` and ``learning_curve.png`` under ``--out`` (default
``runs/learning_curve``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evals import plots
from evals.benchmarks.active_learning import REPO, machine, mwpd_workbench, say
from evals.few_labels import per_category, summary
from retrieval.durable import atomic_write_json

POINTS = ("0", "1", "3", "10", "30", "all")


def _k(point: str) -> int | None:
    return None if point == "all" else int(point)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="first 500 dev items, no LLM")
    ap.add_argument("--dev-limit", type=int, default=None, help="score the first N dev items (default all)")
    ap.add_argument("--points", nargs="+", default=list(POINTS), help="examples per category (or 'all')")
    ap.add_argument("--llm-points", nargs="*", default=[], help="points scored with the LLM too (default none)")
    ap.add_argument("--llm-items", type=int, default=100, help="first N dev items for the LLM pipelines")
    ap.add_argument("--llm-model", default=None, help="GGUF file (default: the embedded backend's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--cache-dir", type=Path, default=REPO / ".cache" / "embeddings")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "learning_curve")
    args = ap.parse_args(argv)
    if args.quick:
        args.dev_limit = args.dev_limit or 500
        args.llm_points = []
    started = time.perf_counter()
    bench = mwpd_workbench(args.cache_dir, dev_limit=args.dev_limit)
    args.out.mkdir(parents=True, exist_ok=True)
    products = bench.eval_products()
    n_llm = min(args.llm_items, len(products))
    results: dict[str, Any] = {
        "benchmark": "learning_curve", "date": f"{datetime.now(UTC):%Y-%m-%d}", "machine": machine(),
        "dataset": "MWPD dev" + (f" (first {args.dev_limit})" if args.dev_limit else ""),
        "pool": len(bench.pool), "seed": args.seed, "llm_items": n_llm, "points": {},
    }
    llm = None
    for point in args.points:
        labelled = per_category(bench.pool_leaves, _k(point), args.seed) if point != "0" else []
        t0 = time.perf_counter()
        results_hybrid = bench.tagger(labelled).tag_many(products)
        row: dict[str, Any] = {"labels": len(labelled),
                               "hybrid": summary(bench.score(results_hybrid, n_boot=args.n_boot)),
                               "seconds": round(time.perf_counter() - t0, 1)}
        say(f"{point} per category ({len(labelled):,} labels): hybrid WAF1 {row['hybrid']['waf1']:.2f} "
            f"({row['seconds']:.0f}s)")
        if point in args.llm_points:
            if llm is None:
                from agent.llm import create_backend

                llm = create_backend("embedded", model=args.llm_model)
            pipeline = "zero-shot" if point == "0" else "rag"
            items = bench.eval_items[:n_llm]
            t0 = time.perf_counter()
            got = bench.tagger(labelled, pipeline=pipeline, llm=llm).tag_many(products[:n_llm])
            row["llm"] = {"pipeline": pipeline, **summary(bench.score(got, items, n_boot=args.n_boot)),
                          "seconds_per_item": round((time.perf_counter() - t0) / max(1, n_llm), 2)}
            row["hybrid_on_llm_items"] = summary(bench.score(results_hybrid[:n_llm], items, n_boot=args.n_boot))
            say(f"  {pipeline} on the first {n_llm}: WAF1 {row['llm']['waf1']:.2f} "
                f"(hybrid on them {row['hybrid_on_llm_items']['waf1']:.2f}; {row['llm']['seconds_per_item']} s/item)")
        results["points"][point] = row
        results["wall_s"] = round(time.perf_counter() - started, 1)
        atomic_write_json(args.out / "results.json", results)
    results["plot"] = str(args.out / plot(results, args.out / "learning_curve.png"))
    atomic_write_json(args.out / "results.json", results)
    return results


def plot(results: dict[str, Any], path: Path) -> str:
    points = results["points"]
    # x: examples per category; "all" sits at the pool's mean per category
    categories = max(1, points.get("1", {}).get("labels") or 1)
    series: dict[str, list[tuple[float, float, Any]]] = {f"hybrid ({results['dataset']})": [], }
    llm_name = f"LLM: zero-shot / rag (first {results['llm_items']} dev)"
    same_name = f"hybrid on the same first {results['llm_items']}"
    for p, row in points.items():
        k = _k(p)
        x = float(k) if k is not None else row["labels"] / categories
        series[f"hybrid ({results['dataset']})"].append((x, row["hybrid"]["waf1"], row["hybrid"]["waf1_ci95"]))
        if "llm" in row:
            series.setdefault(llm_name, []).append((x, row["llm"]["waf1"], row["llm"]["waf1_ci95"]))
            series.setdefault(same_name, []).append(
                (x, row["hybrid_on_llm_items"]["waf1"], row["hybrid_on_llm_items"]["waf1_ci95"]))
    return plots.score_curves(series, path, xlabel="tagged examples per category (log scale; 'all' ≈ pool mean)",
                              title="Learning curve on MWPD", log_x=True)


if __name__ == "__main__":
    main()
