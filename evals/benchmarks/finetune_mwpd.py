"""Compare eval runs on the same dev items: the first N of each run (docs/finetune.md).

    .venv/bin/python -m evals.benchmarks.finetune_mwpd --n 200 runs/mwpd-dev-knn runs/mwpd-dev-hybrid \
        runs/mwpd-dev-rag-first500 runs/ft-dev-score runs/ft-dev-generate

LLM runs on 2 CPU cores cover a prefix of dev.jsonl only; the full-dev runs of the
retrieval pipelines are cut to the same prefix so that every row scores the same items.
Prints one Markdown table row per run: n, WAF1 [95% CI], macro F1 (leaf level), leaf
accuracy, off-taxonomy rate, items/s (of the run's own timings on those items); with
``--baseline RUN`` also each run minus that one, paired (``evals.metrics.paired_difference``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from evals.metrics import compute_metrics, paired_difference
from taxonomy import load_taxonomy


def _first(path: Path, n: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rows.append(json.loads(line))
            if len(rows) >= n:
                break
    return rows


def score(run: Path, n: int, taxonomy: Path) -> dict[str, Any]:
    snap = load_taxonomy(taxonomy, "json")
    records = _first(run / "predictions.jsonl", n)
    timings = {t["id"]: t for t in _first(run / "timings.jsonl", 10**9)}
    for rec in records:
        rec["latency_ms"] = float(timings.get(rec["id"], {}).get("latency_ms", 0.0))
    metrics = compute_metrics(records, snap, n_boot=1000, seed=0)
    wall = sum(float(timings[r["id"]].get("wall_ms", 0.0)) for r in records if r["id"] in timings) / 1000.0
    metrics["items_per_second"] = round(len(records) / wall, 3) if wall > 0 else None
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--taxonomy", type=Path, default=Path("../shared/data/mwpd/taxonomy.json"))
    parser.add_argument("--baseline", type=Path, help="also print each run minus this one, paired")
    args = parser.parse_args()
    ids: list[str] | None = None
    print("| run | n | WAF1 [95% CI] | leaf macro F1 | leaf acc. | off-taxonomy | items/s |")
    print("|---|---|---|---|---|---|---|")
    for run in args.runs:
        m = score(run, args.n, args.taxonomy)
        run_ids = [r["id"] for r in _first(run / "predictions.jsonl", args.n)]
        if ids is None:
            ids = run_ids
        elif run_ids != ids:
            raise SystemExit(f"{run} covers other items than {args.runs[0]}")
        ci = m["ci95"]["waf1"]
        leaf = m["levels"][-1]
        print(f"| {run.name} | {m['n']} | {m['waf1']:.2f} [{ci[0]:.2f}, {ci[1]:.2f}] | {leaf['macro_f1']:.2f} | "
              f"{leaf['accuracy']:.2f} | {m['off_taxonomy_rate']} | {m['items_per_second']} |")
    if args.baseline is None:
        return
    snap = load_taxonomy(args.taxonomy, "json")
    base = _first(args.baseline / "predictions.jsonl", args.n)
    print(f"\nPaired with {args.baseline.name} (same items, paired bootstrap, 1,000 resamples):\n")
    print("| run | Δ WAF1 [95% CI] | Δ leaf macro F1 [95% CI] | Δ leaf acc. [95% CI] | fixed | broken |")
    print("|---|---|---|---|---|---|")
    for run in args.runs:
        d = paired_difference(base, _first(run / "predictions.jsonl", args.n), snap)
        cells = [f"{d[k]:+.2f} [{d[k + '_ci95'][0]:+.2f}, {d[k + '_ci95'][1]:+.2f}]"
                 for k in ("waf1", "macro_f1", "accuracy")]
        print(f"| {run.name} | {' | '.join(cells)} | {d['fixed']} | {d['broken']} |")


if __name__ == "__main__":
    main()
