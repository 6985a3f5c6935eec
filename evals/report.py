"""``tagsmith eval report``: runs side by side, as Markdown and HTML, with PNG plots.

The report is built once as a list of blocks (heading, paragraph, table, image, list) and
rendered to both formats, so they always say the same thing. Contents: the main metrics
with their 95% CIs per run, the review-threshold trade-off, plots (per-level weighted F1,
reliability diagrams, latency histogram, the most frequent confusions per run), the most
confident errors of each run, and what each run was (configuration, versions).

Node ids are shown with their names when a taxonomy is at hand: the one given, else the
one named in each run's ``run.json`` if still readable, else the names in the results.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals import plots
from evals.compare import load_metrics
from evals.records import PredictionRecord, read_predictions
from retrieval.durable import atomic_write_text
from taxonomy import TaxonomyError, load_taxonomy

WORST_ERRORS = 15
TOP_CONFUSIONS = 12
NAME_CHARS = 32
MAIN = [("WAF1", "waf1"), ("accuracy (leaf)", "accuracy"), ("macro F1", "macro_f1"),
        ("hierarchical F1", "hierarchical_f1"), ("ECE (lower is better)", "ece")]

Block = tuple[str, Any]  # ("h1"|"h2", text) | ("p", text) | ("table", (header, rows)) | ("img", (file, alt)) | ("ul", items)


@dataclass(frozen=True)
class Run:
    name: str
    path: Path
    metrics: dict[str, Any]
    predictions: list[PredictionRecord]
    info: dict[str, Any] = field(default_factory=dict)  # run.json: name, pipeline, config, versions


def load_run(path: Path) -> Run:
    """A run directory (or its ``metrics.json``); raises ValueError when unreadable."""
    path = Path(path)
    run_dir = path if path.is_dir() else path.parent
    metrics = load_metrics(path)
    pred_file = run_dir / "predictions.jsonl"
    preds = read_predictions(pred_file, run_dir / "timings.jsonl") if pred_file.exists() else []
    info: dict[str, Any] = {}
    run_file = run_dir / "run.json"
    if run_file.exists():
        try:
            info = json.loads(run_file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"{run_file} is not valid JSON: {exc}") from exc
    return Run(str(info.get("name") or run_dir.name), run_dir, metrics, preds, info)


def node_names(runs: Sequence[Run], taxonomy: Path | None = None) -> dict[str, str]:
    """Node id → name, from the results, then the runs' taxonomies (or the given one)."""
    names: dict[str, str] = {}
    for run in runs:
        for rec in run.predictions:
            for tag in (rec.result or {}).get("tags") or ():
                if isinstance(tag, dict) and isinstance(tag.get("id"), str) and isinstance(tag.get("name"), str):
                    names[tag["id"]] = tag["name"]
    if taxonomy is not None:
        try:
            names.update({k: n.name for k, n in load_taxonomy(taxonomy).nodes.items()})
        except (TaxonomyError, OSError) as exc:
            raise ValueError(f"cannot read the taxonomy {taxonomy}: {exc}") from exc
        return names
    seen: set[tuple[str, str]] = set()
    for run in runs:
        config = run.info.get("config") or {}
        source = (str(config.get("taxonomy") or ""), str(config.get("taxonomy_format") or "json"))
        if source[0] and source not in seen and Path(source[0]).is_file():
            seen.add(source)
            try:
                names.update({k: n.name for k, n in load_taxonomy(source[0], source[1]).nodes.items()})
            except (TaxonomyError, OSError):
                continue  # names are a convenience: the ids still identify the nodes
    return names


def _fmt(value: Any, ci: Any = None, digits: int = 2) -> str:
    if value is None:
        return "–"
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    if isinstance(ci, list) and len(ci) == 2:
        text += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return text


def _metric(m: dict[str, Any], key: str) -> Any:
    return (m.get("hierarchical") or {}).get("f1") if key == "hierarchical_f1" else m.get(key)


def _summary(runs: Sequence[Run]) -> Block:
    rows: list[list[str]] = [["items", *[_fmt(r.metrics.get("n")) for r in runs]]]
    for label, key in MAIN:
        rows.append([label, *[_fmt(_metric(r.metrics, key), (r.metrics.get("ci95") or {}).get(key)) for r in runs]])
    depth = max(len(r.metrics.get("levels") or []) for r in runs)
    for k in range(depth):
        rows.append([f"level {k + 1} weighted F1", *[
            _fmt(lv[k]["weighted_f1"]) if len(lv := r.metrics.get("levels") or []) > k else "–" for r in runs]])
    rows.append(["hierarchical P / R", *[
        f"{_fmt(h.get('precision'))} / {_fmt(h.get('recall'))}" for h in (r.metrics.get("hierarchical") or {} for r in runs)]])
    if any(r.metrics.get("attributes") for r in runs):
        rows.append(["attribute P / R / F1", *[
            " / ".join(_fmt(a.get(k)) for k in ("precision", "recall", "f1")) if (a := r.metrics.get("attributes")) else "–"
            for r in runs]])
    rows.append(["off-taxonomy rate (items)", *[
        f"{r.metrics.get('off_taxonomy_rate', 0):g} ({r.metrics.get('off_taxonomy_items', '?')})" for r in runs]])
    for label, key, digits in [("no-prediction rate", "no_prediction_rate", 4), ("needs-review rate", "needs_review_rate", 4),
                               ("accuracy not flagged", "accuracy_not_flagged", 2), ("fallback rate", "fallback_rate", 4),
                               ("items/s", "items_per_second", 2), ("LLM tokens/item", "llm_tokens_per_item", 1)]:
        rows.append([label, *[_fmt(r.metrics.get(key), digits=digits) for r in runs]])
    rows.append(["latency p50 / p95 ms", *[
        f"{_fmt(lat.get('p50'), digits=1)} / {_fmt(lat.get('p95'), digits=1)}"
        for lat in (r.metrics.get("latency_ms") or {} for r in runs)]])
    return ("table", (["metric", *[r.name for r in runs]], rows))


def _review_table(runs: Sequence[Run]) -> list[Block]:
    curves = [r.metrics.get("review_curve") or [] for r in runs]
    thresholds = sorted({row["threshold"] for curve in curves for row in curve})
    if not thresholds:
        return []
    rows = []
    for t in thresholds:
        cells = []
        for curve in curves:
            row = next((x for x in curve if x["threshold"] == t), None)
            cells.append("–" if row is None else f"{100 * row['review_rate']:.1f}% → {_fmt(row['accuracy_kept'], digits=1)}")
        rows.append([f"{t:.2f}", *cells])
    return [("h2", "Review threshold trade-off"),
            ("p", "Items whose confidence is below the threshold go to review: share reviewed → leaf accuracy "
                  "(%) of the items that are not."),
            ("table", (["threshold", *[r.name for r in runs]], rows))]


def _wrong(rec: PredictionRecord) -> bool:
    return not rec.pred_tags or rec.pred_tags[-1] != rec.gold_tags[-1]


def _plots(runs: Sequence[Run], out: Path, label: Callable[[str], str]) -> list[Block]:
    blocks: list[Block] = [("h2", "Per-level F1")]
    levels = {r.name: [lv["weighted_f1"] for lv in r.metrics.get("levels") or []] for r in runs}
    blocks.append(("img", (plots.level_f1_bars(levels, out / "levels_f1.png"), "weighted F1 per level and run")))
    blocks.append(("h2", "Calibration"))
    tables = {r.name: (r.metrics.get("reliability") or [], float(r.metrics.get("ece") or 0.0)) for r in runs}
    blocks.append(("img", (plots.reliability_diagrams(tables, out / "calibration.png"), "reliability diagrams")))
    blocks.append(("h2", "Latency"))
    latencies = {r.name: [p.latency_ms for p in r.predictions] for r in runs}
    blocks.append(("img", (plots.latency_histogram(latencies, out / "latency.png"), "latency histogram")))
    blocks.append(("h2", "Most frequent confusions (gold → predicted leaf)"))
    for i, r in enumerate(runs):
        pairs = Counter((p.gold_tags[-1], p.pred_tags[-1] if p.pred_tags else "<none>")
                        for p in r.predictions if _wrong(p)).most_common(TOP_CONFUSIONS)
        if pairs:
            bars = [(f"{label(g)} → {label(p)}", count) for (g, p), count in pairs]
            png = plots.confusion_bars(bars, r.name, out / f"confusions_{i}.png")
            blocks.append(("img", (png, f"confusions of {r.name}")))
    return blocks


def _worst(run: Run, names: dict[str, str]) -> Block:
    wrong = sorted((p for p in run.predictions if _wrong(p)), key=lambda p: -(p.confidence or 0.0))

    def path(tags: Sequence[str]) -> str:
        return (" > ".join(names.get(t, t) for t in tags) + f" [{tags[-1]}]") if tags else "–"

    rows = [[p.id, p.display_title[:60], path(p.gold_tags), path(p.pred_tags), _fmt(p.confidence, digits=3)]
            for p in wrong[:WORST_ERRORS]]
    return ("table", (["id", "title", "gold", "predicted", "confidence"], rows))


def _about(runs: Sequence[Run]) -> Block:
    rows = []
    for r in runs:
        config = r.info.get("config") or r.metrics.get("config") or {}
        versions = r.info.get("versions") or r.metrics.get("versions") or {}
        rows.append([r.name, str(r.path), str(r.info.get("pipeline") or r.metrics.get("pipeline") or "?"),
                     str(config.get("dataset") or "?"), str(config.get("examples") or "–"),
                     str(config.get("limit") or "all"), str(config.get("seed", "?")),
                     ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "?"])
    return ("table", (["run", "directory", "pipeline", "dataset", "examples", "limit", "seed", "versions"], rows))


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _markdown(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for kind, value in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + value)
        elif kind == "p":
            out.append(value)
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in value))
        elif kind == "img":
            out.append(f"![{value[1]}]({value[0]})")
        elif kind == "table":
            header, rows = value
            lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _html(blocks: Sequence[Block], title: str) -> str:
    e = html.escape
    body: list[str] = []
    for kind, value in blocks:
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{e(value)}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{e(value)}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{e(str(i))}</li>" for i in value) + "</ul>")
        elif kind == "img":
            body.append(f'<p><img src="{e(value[0])}" alt="{e(value[1])}"></p>')
        elif kind == "table":
            header, rows = value
            head = "".join(f"<th>{e(str(h))}</th>" for h in header)
            trs = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto}img{max-width:100%}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;font-size:90%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def _notes(runs: Sequence[Run]) -> list[Block]:
    notes = []
    sizes = {r.name: r.metrics.get("n") for r in runs}
    if len(set(sizes.values())) > 1:
        notes.append("The runs scored different numbers of items ("
                     + ", ".join(f"{k}: {v}" for k, v in sizes.items()) + "): compare them through their CIs.")
    for r in runs:
        if (r.metrics.get("off_taxonomy_rate") or 0) > 0:
            notes.append(f"FAILURE: {r.name} returned off-taxonomy tags (rate {r.metrics['off_taxonomy_rate']:g}).")
    return [("ul", notes)] if notes else []


def write_report(run_dirs: Sequence[Path], out_dir: Path, *, taxonomy: Path | None = None) -> Path:
    """Write ``report.md``, ``report.html`` and the PNGs into ``out_dir``; returns the .md.
    Raises ValueError when a run cannot be read."""
    if not run_dirs:
        raise ValueError("give at least one run directory")
    runs = [load_run(Path(p)) for p in run_dirs]
    names = node_names(runs, taxonomy)

    def label(node_id: str) -> str:
        name = names.get(node_id)
        return f"{name.strip()[:NAME_CHARS]} ({node_id})" if name and name != node_id else node_id

    out_dir.mkdir(parents=True, exist_ok=True)
    title = "tagsmith eval report: " + ", ".join(r.name for r in runs)
    blocks: list[Block] = [
        ("h1", title),
        ("p", "Scores in %, 95% bootstrap confidence intervals in brackets; rates are fractions. "
              "WAF1 = mean over levels of the support-weighted F1 (MWPD2020 leaderboard metric)."),
        *_notes(runs),
        ("h2", "Summary"), _summary(runs),
        *_review_table(runs),
        *_plots(runs, out_dir, label),
    ]
    for r in runs:
        if r.predictions:
            blocks += [("h2", f"Worst errors of {r.name} (most confident first)"), _worst(r, names)]
    blocks += [("h2", "Runs"), _about(runs)]
    md = out_dir / "report.md"
    atomic_write_text(md, _markdown(blocks))
    atomic_write_text(out_dir / "report.html", _html(blocks, title))
    return md
