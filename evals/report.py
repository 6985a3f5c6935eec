"""``tagsmith eval report``: runs side by side, as Markdown and HTML, with PNG plots.

The report is built once as a list of blocks (heading, paragraph, table, image, list) and
rendered to both formats, so they always say the same thing. Plots: per-level weighted F1
per run, reliability diagram (calibration), the most frequent confusions per run, and
the latency histogram. The highest-confidence errors are listed for inspection.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evals.compare import load_metrics

WORST_ERRORS = 15
TOP_CONFUSIONS = 12


@dataclass(frozen=True)
class Run:
    name: str
    path: Path
    metrics: dict[str, Any]
    predictions: list[dict[str, Any]]


Block = tuple[str, Any]  # ("h2", text) | ("p", text) | ("table", (header, rows)) | ("img", (file, alt)) | ("ul", items)


def load_run(path: Path) -> Run:
    metrics = load_metrics(path)
    preds: list[dict[str, Any]] = []
    pred_file = path / "predictions.jsonl"
    if pred_file.exists():
        with pred_file.open(encoding="utf-8") as fh:
            preds = [json.loads(line) for line in fh if line.strip()]
    name = path.name
    run_file = path / "run.json"
    if run_file.exists():
        name = json.loads(run_file.read_text(encoding="utf-8")).get("name") or name
    return Run(name, path, metrics, preds)


def _fmt(value: Any, ci: Any = None) -> str:
    if value is None:
        return "–"
    text = f"{value:.2f}" if isinstance(value, float) else str(value)
    if isinstance(ci, list) and len(ci) == 2:
        text += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
    return text


def _summary(runs: Sequence[Run]) -> Block:
    header = ["metric", *[r.name for r in runs]]
    rows = []
    for label, key in [("WAF1", "waf1"), ("accuracy (leaf)", "accuracy"), ("macro F1", "macro_f1"),
                       ("hierarchical F1", "hierarchical_f1"), ("ECE", "ece")]:
        row = [label]
        for r in runs:
            m = r.metrics
            value = m["hierarchical"]["f1"] if key == "hierarchical_f1" else m.get(key)
            row.append(_fmt(value, m.get("ci95", {}).get(key)))
        rows.append(row)
    for label, key in [("off-taxonomy rate", "off_taxonomy_rate"), ("needs-review rate", "needs_review_rate"),
                       ("accuracy not flagged", "accuracy_not_flagged"), ("fallback rate", "fallback_rate"),
                       ("items/s", "items_per_second"), ("LLM tokens/item", "llm_tokens_per_item"), ("n", "n")]:
        rows.append([label, *[_fmt(r.metrics.get(key)) for r in runs]])
    rows.append(["latency p50 / p95 ms", *[
        f"{r.metrics['latency_ms']['p50']:.1f} / {r.metrics['latency_ms']['p95']:.1f}" for r in runs]])
    return ("table", (header, rows))


def _plots(runs: Sequence[Run], out: Path) -> list[Block]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks: list[Block] = []
    depth = max(len(r.metrics.get("levels", [])) for r in runs)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(runs)
    for i, r in enumerate(runs):
        values = [lv["weighted_f1"] for lv in r.metrics.get("levels", [])]
        ax.bar(np.arange(len(values)) + i * width, values, width, label=r.name)
    ax.set_xticks(np.arange(depth) + 0.4 - width / 2, [f"level {k + 1}" for k in range(depth)])
    ax.set_ylabel("weighted F1 (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "levels_f1.png", dpi=110)
    plt.close(fig)
    blocks += [("h2", "Per-level F1"), ("img", ("levels_f1.png", "weighted F1 per level and run"))]

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    for r in runs:
        table = [b for b in r.metrics.get("reliability", []) if b["count"]]
        ax.plot([b["confidence"] for b in table], [b["accuracy"] for b in table], marker="o",
                label=f"{r.name} (ECE {r.metrics.get('ece', 0):.1f})")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "calibration.png", dpi=110)
    plt.close(fig)
    blocks += [("h2", "Calibration"), ("img", ("calibration.png", "reliability diagram"))]

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for r in runs:
        latency = [float(p.get("latency_ms", 0.0)) for p in r.predictions]
        if not latency:
            latency = _timings(r.path)
        if latency:
            ax.hist(latency, bins=40, alpha=0.5, label=r.name)
    ax.set_xlabel("latency per item (ms)")
    ax.set_ylabel("items")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)
    blocks += [("h2", "Latency"), ("img", ("latency.png", "latency histogram"))]

    blocks.append(("h2", "Most frequent confusions (gold → predicted leaf)"))
    for i, r in enumerate(runs):
        pairs = Counter(
            (p["gold_tags"][-1], p["pred_tags"][-1] if p["pred_tags"] else "<none>")
            for p in r.predictions if not p["pred_tags"] or p["pred_tags"][-1] != p["gold_tags"][-1]
        ).most_common(TOP_CONFUSIONS)
        if not pairs:
            continue
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(pairs) + 1))
        ax.barh([f"{g} → {p}" for (g, p), _ in reversed(pairs)], [c for _, c in reversed(pairs)])
        ax.set_xlabel("items")
        ax.set_title(r.name, fontsize=9)
        fig.tight_layout()
        fig.savefig(out / f"confusions_{i}.png", dpi=110)
        plt.close(fig)
        blocks.append(("img", (f"confusions_{i}.png", f"confusions of {r.name}")))
    return blocks


def _timings(path: Path) -> list[float]:
    file = path / "timings.jsonl"
    if not file.exists():
        return []
    with file.open(encoding="utf-8") as fh:
        return [float(json.loads(line)["latency_ms"]) for line in fh if line.strip()]


def _worst(run: Run) -> Block:
    wrong = [p for p in run.predictions if not p["pred_tags"] or p["pred_tags"][-1] != p["gold_tags"][-1]]
    wrong.sort(key=lambda p: -(p.get("confidence") or 0.0))
    rows = [[p["id"], (p.get("title") or "")[:60], " > ".join(p["gold_tags"]), " > ".join(p["pred_tags"]) or "–",
             _fmt(p.get("confidence"))] for p in wrong[:WORST_ERRORS]]
    return ("table", (["id", "title", "gold", "predicted", "confidence"], rows))


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
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;font-size:90%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def write_report(run_dirs: Sequence[Path], out_dir: Path) -> Path:
    """Write ``report.md``, ``report.html`` and the PNGs into ``out_dir``; returns the .md."""
    if not run_dirs:
        raise ValueError("give at least one run directory")
    runs = [load_run(Path(p)) for p in run_dirs]
    out_dir.mkdir(parents=True, exist_ok=True)
    title = "tagsmith eval report: " + ", ".join(r.name for r in runs)
    blocks: list[Block] = [
        ("h1", title),
        ("p", "Scores in %, 95% bootstrap confidence intervals in brackets; rates are fractions. "
              "WAF1 = mean over levels of the support-weighted F1 (MWPD2020 leaderboard metric)."),
        ("h2", "Summary"), _summary(runs),
        *_plots(runs, out_dir),
    ]
    for r in runs:
        blocks += [("h2", f"Worst errors of {r.name} (most confident first)"), _worst(r)]
    blocks += [("h2", "Runs"), ("ul", [f"{r.name}: {r.path} (pipeline {r.metrics.get('pipeline', '?')})" for r in runs])]
    md = out_dir / "report.md"
    md.write_text(_markdown(blocks), encoding="utf-8")
    (out_dir / "report.html").write_text(_html(blocks, title), encoding="utf-8")
    return md
