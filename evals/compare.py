"""The regression gate: is a new run worse than a base run by more than noise + margin?

For each main score (higher is better: ``waf1``, ``accuracy``, ``macro_f1``, hierarchical
F1) the gate compares the 95% CI *lower* bounds: the new run fails when its lower bound is
more than ``margin`` points below the base's. ECE (lower is better) fails when its *upper*
bound rises by more than ``margin``. Any off-taxonomy tag in the new run fails outright.
Where either run has no CI (``--bootstrap 0``) the point values are compared instead.
Runs of different sizes or datasets are compared all the same, with a warning.

Attribute runs (``--task attributes``: ``"task": "attributes"`` in ``metrics.json``) are gated
the same way on WDC-PAVE's F1, precision and recall; any off-schema value fails outright.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HIGHER_IS_BETTER = ("waf1", "accuracy", "macro_f1", "hierarchical_f1")
LOWER_IS_BETTER = ("ece",)
ATTRIBUTE_HIGHER_IS_BETTER = ("f1", "precision", "recall")


@dataclass(frozen=True)
class GateRow:
    metric: str
    base: float
    new: float
    delta: float  # new - base of the compared bound (or point value)
    compared: str  # "ci95 lower", "ci95 upper" or "point"
    ok: bool

    @property
    def verdict(self) -> str:
        return "ok" if self.ok else "worse"


@dataclass(frozen=True)
class CompareResult:
    rows: tuple[GateRow, ...]
    off_taxonomy_rate: float  # of the new run
    margin: float
    warnings: tuple[str, ...] = ()
    off_schema_values: int = 0  # of the new run (attribute runs)

    @property
    def ok(self) -> bool:
        return self.off_taxonomy_rate == 0 and self.off_schema_values == 0 and all(r.ok for r in self.rows)

    @property
    def failures(self) -> tuple[str, ...]:
        """One line per reason the gate fails (empty when it passes)."""
        out = [f"{r.metric}: {r.compared} {r.new:.2f} vs {r.base:.2f} ({r.delta:+.2f}, margin {self.margin})"
               for r in self.rows if not r.ok]
        if self.off_taxonomy_rate > 0:
            out.append(f"off_taxonomy_rate {self.off_taxonomy_rate:g} > 0")
        if self.off_schema_values > 0:
            out.append(f"off_schema_values {self.off_schema_values} > 0")
        return tuple(out)


def load_metrics(path: str | Path) -> dict[str, Any]:
    """``metrics.json`` of a run directory, or the file itself."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ValueError(f"{path} not found: is it a finished eval run?") from exc
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not ("waf1" in data or (data.get("task") == "attributes" and "f1" in data)):
        raise ValueError(f"{path} is not a tagsmith metrics file")
    return data


def _value(metrics: dict[str, Any], key: str, which: str) -> float:
    try:
        raw = metrics["hierarchical"]["f1"] if key == "hierarchical_f1" else metrics[key]
        return float(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the {which} metrics have no usable {key!r}: not a tagsmith metrics file?") from exc


def _bound(metrics: dict[str, Any], key: str, side: int, which: str) -> tuple[float, bool]:
    ci = (metrics.get("ci95") or {}).get(key)
    if isinstance(ci, list) and len(ci) == 2:
        return float(ci[side]), True
    return _value(metrics, key, which), False


def _warnings(base: dict[str, Any], new: dict[str, Any]) -> tuple[str, ...]:
    out = []
    if base.get("n") != new.get("n"):
        out.append(f"the runs scored different numbers of items ({base.get('n')} vs {new.get('n')})")
    names = [Path(str((m.get("config") or {}).get("dataset") or "")).name for m in (base, new)]
    if all(names) and names[0] != names[1]:
        out.append(f"the runs used different datasets ({names[0]} vs {names[1]})")
    return tuple(out)


def compare_runs(base: dict[str, Any], new: dict[str, Any], *, margin: float = 1.0) -> CompareResult:
    """Gate ``new`` against ``base`` (two ``metrics.json`` bodies); ``margin`` in points.
    Raises ValueError when either lacks a main metric or the margin is negative."""
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0 points, got {margin}")
    tasks = {base.get("task", "categories"), new.get("task", "categories")}
    if "attributes" in tasks:
        if tasks != {"attributes"}:
            raise ValueError("an attribute run can only be compared with another attribute run")
        return _compare_attribute_runs(base, new, margin)
    if "off_taxonomy_rate" not in new:
        raise ValueError("the new metrics have no 'off_taxonomy_rate': not a tagsmith metrics file?")
    rows = []
    for key in (*HIGHER_IS_BETTER, *LOWER_IS_BETTER):
        higher = key in HIGHER_IS_BETTER
        side = 0 if higher else 1
        b, b_ci = _bound(base, key, side, "base")
        n, n_ci = _bound(new, key, side, "new")
        compared = ("ci95 lower" if higher else "ci95 upper") if (b_ci and n_ci) else "point"
        if compared == "point":  # mixed: compare points, never a bound with a point
            b, n = _value(base, key, "base"), _value(new, key, "new")
        delta = n - b
        ok = delta >= -margin if higher else delta <= margin  # NaN compares False: fails
        rows.append(GateRow(key, round(b, 3), round(n, 3), round(delta, 3), compared, ok))
    return CompareResult(tuple(rows), float(new["off_taxonomy_rate"]), margin, _warnings(base, new))


def _compare_attribute_runs(base: dict[str, Any], new: dict[str, Any], margin: float) -> CompareResult:
    if "off_schema_values" not in new:
        raise ValueError("the new metrics have no 'off_schema_values': not a tagsmith attribute metrics file?")
    rows = []
    for key in ATTRIBUTE_HIGHER_IS_BETTER:
        b, b_ci = _bound(base, key, 0, "base")
        n, n_ci = _bound(new, key, 0, "new")
        compared = "ci95 lower" if (b_ci and n_ci) else "point"
        if compared == "point":
            b, n = _value(base, key, "base"), _value(new, key, "new")
        delta = n - b
        rows.append(GateRow(key, round(b, 3), round(n, 3), round(delta, 3), compared, delta >= -margin))
    return CompareResult(tuple(rows), 0.0, margin, _warnings(base, new), off_schema_values=int(new["off_schema_values"]))
