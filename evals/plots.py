"""The report's PNG plots (matplotlib, Agg backend: no display, safe in threads of a server).

Each function takes plain data, writes one PNG and returns its file name, so the report
module decides what to show and these only decide how.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DPI = 110


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: never try to open a window
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")  # "tight": long tick labels are never cut
    _pyplot().close(fig)
    return path.name


def level_f1_bars(levels: Mapping[str, Sequence[float]], path: Path) -> str:
    """Grouped bars: weighted F1 per hierarchy level (x) for each run (colour)."""
    plt = _pyplot()
    depth = max((len(v) for v in levels.values()), default=0)
    fig, ax = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / max(len(levels), 1)
    for i, (name, values) in enumerate(levels.items()):
        x = np.arange(len(values)) + i * width
        bars = ax.bar(x, values, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=6, padding=1)
    ax.set_xticks(np.arange(depth) + 0.4 - width / 2, [f"level {k + 1}" for k in range(depth)])
    ax.set_ylabel("weighted F1 (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def reliability_diagrams(tables: Mapping[str, tuple[Sequence[Mapping[str, Any]], float]], path: Path) -> str:
    """One reliability diagram per run: accuracy per confidence bin (bars, labelled with
    the item count) against the diagonal of perfect calibration."""
    plt = _pyplot()
    cols = min(3, max(len(tables), 1))
    rows = -(-len(tables) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat[len(tables):]:
        ax.set_visible(False)
    for ax, (name, (table, ece)) in zip(axes.flat, tables.items(), strict=False):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        for row in table:
            low, high = row["bin"]
            if not row["count"]:
                continue
            ax.bar((low + high) / 2, row["accuracy"], width=high - low, color="tab:blue", alpha=0.7,
                   edgecolor="white")
            ax.plot(row["confidence"], row["accuracy"], "o", color="tab:red", markersize=3)
            ax.annotate(str(row["count"]), ((low + high) / 2, row["accuracy"]), fontsize=5, ha="center",
                        va="bottom")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.08)
        ax.set_title(f"{name}\nECE {ece:.1f}", fontsize=8)
        ax.set_xlabel("confidence", fontsize=7)
        ax.set_ylabel("accuracy", fontsize=7)
        ax.tick_params(labelsize=6)
    return _save(fig, path)


def latency_histogram(latencies: Mapping[str, Sequence[float]], path: Path) -> str:
    """Latency per item; log-spaced bins, since pipelines differ by orders of magnitude."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.8))
    positive = [v for values in latencies.values() for v in values if v > 0]
    if positive:
        low, high = min(positive), max(positive)
        bins = np.geomspace(low, high * 1.0001, 50) if high > low else np.array([low * 0.9, low * 1.1])
        for name, values in latencies.items():
            data = [v for v in values if v > 0]
            if data:
                ax.hist(data, bins=bins, alpha=0.5, label=f"{name} (p50 {np.median(data):.1f} ms)")
        ax.set_xscale("log")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.text(0.5, 0.5, "no latencies recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("latency per item (ms, log scale)")
    ax.set_ylabel("items")
    return _save(fig, path)


def confusion_bars(pairs: Sequence[tuple[str, int]], title: str, path: Path) -> str:
    """The most frequent (gold → predicted) leaf pairs of one run, most frequent on top."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(pairs) + 1.2))
    ax.barh([label for label, _ in reversed(pairs)], [count for _, count in reversed(pairs)])
    ax.set_xlabel("items")
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    return _save(fig, path)


def grouped_hbars(
    rows: Mapping[str, Mapping[str, float | None]], path: Path, *, xlabel: str, title: str = ""
) -> str:
    """Horizontal grouped bars: one group per row label (top to bottom in the given order),
    one bar per run (colour), labelled with the value; a missing value draws no bar. Used
    for the per-attribute and per-category F1 of attribute runs."""
    plt = _pyplot()
    labels = list(rows)
    runs = list(dict.fromkeys(run for values in rows.values() for run in values))
    height = 0.8 / max(len(runs), 1)
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.09 * len(labels) * max(1, len(runs)) + 1.5)))
    y = np.arange(len(labels))[::-1].astype(float)
    for i, run in enumerate(runs):
        values = [rows[label].get(run) for label in labels]
        offsets = y + 0.4 - height / 2 - i * height
        drawn = [(o, v) for o, v in zip(offsets, values, strict=True) if v is not None]
        if not drawn:
            continue
        bars = ax.barh([o for o, _ in drawn], [v for _, v in drawn], height, label=run)
        ax.bar_label(bars, fmt="%.0f", fontsize=5, padding=1)
    ax.set_yticks(y, labels)
    ax.tick_params(axis="y", labelsize=6)
    ax.set_xlabel(xlabel)
    ax.set_xlim(0, 105)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def score_curves(
    series: Mapping[str, Sequence[tuple[float, float, Sequence[float] | None]]], path: Path, *,
    xlabel: str, ylabel: str = "WAF1 (%)", title: str = "",
    references: Mapping[str, float] | None = None, log_x: bool = False,
) -> str:
    """One line per series through its points ``(x, score, [ci low, ci high] or None)``,
    the CI as a shaded band; ``references`` are labelled horizontal lines (e.g. the
    full-pool score). Used by the learning-curve and active-learning benchmarks."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for name, points in series.items():
        pts = sorted(points, key=lambda p: p[0])
        if not pts:
            continue
        xs = [p[0] for p in pts]
        line = ax.plot(xs, [p[1] for p in pts], marker="o", markersize=3, linewidth=1.3, label=name)[0]
        banded = [p for p in pts if p[2] is not None]
        if banded:
            ax.fill_between([p[0] for p in banded], [p[2][0] for p in banded],  # type: ignore[index]
                            [p[2][1] for p in banded], color=line.get_color(), alpha=0.15)  # type: ignore[index]
    for label, value in (references or {}).items():
        ax.axhline(value, color="grey", linestyle="--", linewidth=0.9)
        ax.annotate(f"{label} ({value:.1f})", (0.01, value), xycoords=("axes fraction", "data"),
                    fontsize=7, va="bottom", color="dimgrey")
    if log_x:
        ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)
