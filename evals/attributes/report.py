"""The report of attribute runs (``tagsmith eval report`` on ``--task attributes`` runs):
Markdown and HTML from one list of blocks, as the category report (:mod:`evals.report`).

Contents: the overall WDC-PAVE P/R/F1 with 95% CIs per run; each run minus each run listed
before it as a paired bootstrap difference with its CI; F1 per category and per attribute
(tables and bar charts); the most confident wrong values of each run; what each run was.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals import plots
from evals.attributes.runner import read_attribute_predictions
from evals.attributes.scoring import (
    OUTCOMES,
    attribute_paired_difference,
    outcome,
    predicted_values,
)
from evals.report import Block, _html, _markdown
from retrieval.durable import atomic_write_text

WORST = 15


@dataclass(frozen=True)
class AttrRun:
    name: str
    path: Path
    metrics: dict[str, Any]
    records: list[dict[str, Any]]
    info: dict[str, Any]


def is_attribute_run(path: Path) -> bool:
    """Whether a run directory (or metrics file) holds an attribute run."""
    path = Path(path)
    metrics = path / "metrics.json" if path.is_dir() else path
    try:
        data = json.loads(metrics.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("task") == "attributes"


def load_attr_run(path: Path) -> AttrRun:
    path = Path(path)
    run_dir = path if path.is_dir() else path.parent
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{run_dir / 'metrics.json'} is not readable: {exc}") from exc
    if not isinstance(metrics, dict) or metrics.get("task") != "attributes":
        raise ValueError(f"{run_dir} is not an attribute run (metrics.json has no task 'attributes')")
    records = read_attribute_predictions(run_dir) if (run_dir / "predictions.jsonl").exists() else []
    info: dict[str, Any] = {}
    if (run_dir / "run.json").exists():
        try:
            info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"{run_dir / 'run.json'} is not valid JSON: {exc}") from exc
    return AttrRun(str(info.get("name") or run_dir.name), run_dir, metrics, records, info)


def _f(value: Any, ci: Any = None, digits: int = 2) -> str:
    if value is None:
        return "–"
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    if isinstance(ci, list) and len(ci) == 2:
        text += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return text


def _signed(value: Any, ci: Any) -> str:
    if value is None:
        return "–"
    text = f"{value:+.2f}"
    if isinstance(ci, list) and len(ci) == 2:
        text += f" [{ci[0]:+.2f}, {ci[1]:+.2f}]"
    return text


def _summary(runs: Sequence[AttrRun]) -> Block:
    rows: list[list[str]] = []

    def row(label: str, cell: Any) -> None:
        rows.append([label, *[cell(r.metrics) for r in runs]])

    row("offers", lambda m: _f(m.get("n")))
    row("(offer, attribute) pairs", lambda m: _f(m.get("pairs")))
    for key in ("f1", "precision", "recall"):
        row(f"{key if key != 'f1' else 'F1'}", lambda m, k=key: _f(m.get(k), (m.get("ci95") or {}).get(k)))
    row("NN / NV / VN / VC / VW", lambda m: " / ".join(str((m.get("counts") or {}).get(k, "?")) for k in OUTCOMES))
    row("F1 of values as written (extracted)", lambda m: _f((m.get("extracted") or {}).get("f1"),
                                                             ((m.get("extracted") or {}).get("ci95") or {}).get("f1")))
    row("category accuracy (category not given)", lambda m: _f(m.get("category_accuracy")))
    row("off-schema values (must be 0)", lambda m: _f(m.get("off_schema_values")))
    row("values per offer", lambda m: _f(m.get("values_per_offer")))
    row("needs-review rate", lambda m: _f(m.get("needs_review_rate"), digits=4))
    row("items/s", lambda m: _f(m.get("items_per_second")))
    row("latency p50 / p95 ms", lambda m: f"{_f((m.get('latency_ms') or {}).get('p50'), digits=1)} / "
                                          f"{_f((m.get('latency_ms') or {}).get('p95'), digits=1)}")
    return ("table", (["metric", *[r.name for r in runs]], rows))


def _paired(runs: Sequence[AttrRun], n_boot: int, seed: int) -> list[Block]:
    """Every later run minus every earlier one (list the baselines first)."""
    if len(runs) < 2:
        return []
    rows = []
    notes = []
    for i, base in enumerate(runs):
        for r in runs[i + 1:]:
            if not base.records or [x["id"] for x in r.records] != [x["id"] for x in base.records]:
                notes.append(f"{r.name} and {base.name} scored other offers: no paired difference")
                continue
            d = attribute_paired_difference(base.records, r.records, n_boot=n_boot, seed=seed)
            rows.append([f"{r.name} − {base.name}", _signed(d["f1"], d.get("f1_ci95")),
                         _signed(d["precision"], d.get("precision_ci95")),
                         _signed(d["recall"], d.get("recall_ci95")), str(d["fixed"]), str(d["broken"])])
    blocks: list[Block] = [
        ("h2", "Paired differences"),
        ("p", f"Each run minus each run listed before it, in points, with the 95% CI of the difference over "
              f"{n_boot} paired bootstrap resamples of the offers (both runs scored on the same resamples). "
              "A CI that excludes 0 is a difference beyond noise. fixed / broken: (offer, attribute) outcomes "
              "that went from wrong to right (NN or VC) and back."),
    ]
    if rows:
        blocks.append(("table", (["runs", "ΔF1", "Δprecision", "Δrecall", "fixed", "broken"], rows)))
    if notes:
        blocks.append(("ul", notes))
    return blocks


def _breakdown(runs: Sequence[AttrRun], key: str, out: Path, png: str, what: str) -> list[Block]:
    labels = sorted({k for r in runs for k in (r.metrics.get(key) or {})})
    if not labels:
        return []
    rows = []
    for label in labels:
        cells = []
        for r in runs:
            entry = (r.metrics.get(key) or {}).get(label)
            cells.append("–" if entry is None else
                         f"{_f(entry.get('f1'), entry.get('f1_ci95'), 1)} (P {_f(entry.get('precision'), digits=1)}, "
                         f"R {_f(entry.get('recall'), digits=1)})")
        first: dict[str, Any] = next((r.metrics[key][label] for r in runs if label in (r.metrics.get(key) or {})), {})
        size = first.get("n") if key == "per_category" else f"{first.get('with_gold')}/{first.get('pairs')}"
        rows.append([label, str(size), *cells])
    head = "offers" if key == "per_category" else "with gold / pairs"
    chart = {label: {r.name: (r.metrics.get(key) or {}).get(label, {}).get("f1") for r in runs} for label in labels}
    image = plots.grouped_hbars(chart, out / png, xlabel="F1 (%)", title=f"F1 per {what}")
    return [("h2", f"Per {what}"),
            ("table", ([what, head, *[f"{r.name}: F1 [CI] (P, R)" for r in runs]], rows)),
            ("img", (image, f"F1 per {what} and run"))]


def _worst(run: AttrRun) -> Block:
    wrong = []
    for rec in run.records:
        conf = rec.get("confidence") or {}
        for name, pred in (rec.get("attributes") or {}).items():
            asked = rec.get("attributes_asked")
            if isinstance(asked, list) and name not in asked:
                continue
            gold = (rec.get("gold_attributes") or {}).get(name, [])
            kind = outcome(gold, pred)
            if kind in ("VW", "VN"):
                shown = predicted_values(pred)
                wrong.append((-(conf.get(name) or 0.0), rec["id"], str(rec.get("title") or "")[:50], name,
                              " | ".join(gold) or "n/a", shown[0] if shown else "", kind, conf.get(name)))
    wrong.sort(key=lambda w: (w[0], w[1], w[3]))
    rows = [[i, t, a, g, p, k, _f(c, digits=3)] for _, i, t, a, g, p, k, c in wrong[:WORST]]
    return ("table", (["id", "title", "attribute", "gold", "predicted (first)", "outcome", "confidence"], rows))


def _about(runs: Sequence[AttrRun]) -> Block:
    rows = []
    for r in runs:
        config = r.info.get("config") or r.metrics.get("config") or {}
        versions = r.info.get("versions") or r.metrics.get("versions") or {}
        key = r.info.get("key") or {}
        rows.append([r.name, str(r.path), str(r.info.get("pipeline") or r.metrics.get("pipeline") or "?"),
                     str(key.get("embedder") or "–"), str(config.get("dataset") or "?"),
                     str(config.get("examples") or "–"), str(config.get("limit") or "all"),
                     str(config.get("seed", "?")), ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "?"])
    return ("table", (["run", "directory", "pipeline", "embedder", "dataset", "examples", "limit", "seed",
                       "versions"], rows))


def write_attribute_report(run_dirs: Sequence[Path], out_dir: Path, *, n_boot: int = 1000, seed: int = 0) -> Path:
    """Write ``report.md``, ``report.html`` and the PNGs for attribute runs into ``out_dir``
    (each later run is compared, paired, with each earlier one: list baselines first); returns the .md."""
    if not run_dirs:
        raise ValueError("give at least one run directory")
    runs = [load_attr_run(Path(p)) for p in run_dirs]
    out_dir.mkdir(parents=True, exist_ok=True)
    title = "tagsmith attribute eval report: " + ", ".join(r.name for r in runs)
    notes = []
    if len({r.metrics.get("n") for r in runs}) > 1:
        notes.append("The runs scored different numbers of offers: compare them through their CIs.")
    for r in runs:
        if r.metrics.get("off_schema_values"):
            notes.append(f"FAILURE: {r.name} returned {r.metrics['off_schema_values']} off-schema values.")
    blocks: list[Block] = [
        ("h1", title),
        ("p", "WDC-PAVE's metric per (offer, attribute asked): NN both n/a, NV gold value but none predicted, VN "
              "a value predicted where gold has none, VC the first predicted value equals a gold value "
              "(case-insensitive, whitespace collapsed), VW a wrong value. P = VC/(VC+VW+VN), R = VC/(VC+VW+NV). "
              "Scores in %, 95% bootstrap CIs over offers in brackets."),
        *([("ul", notes)] if notes else []),
        ("h2", "Summary"), _summary(runs),
        *_paired(runs, n_boot, seed),
        *_breakdown(runs, "per_category", out_dir, "attributes_categories_f1.png", "category"),
        *_breakdown(runs, "per_attribute", out_dir, "attributes_f1.png", "attribute"),
    ]
    for r in runs:
        if r.records:
            blocks += [("h2", f"Most confident wrong values of {r.name}"), _worst(r)]
    blocks += [("h2", "Runs"), _about(runs)]
    md = out_dir / "report.md"
    atomic_write_text(md, _markdown(blocks))
    atomic_write_text(out_dir / "report.html", _html(blocks, title))
    return md
