"""The regression gate: is a new run worse than a base run by more than noise + margin?

For each main score (higher is better) the gate compares the 95% CI *lower* bounds: the
new run fails when its lower bound is more than ``margin`` points below the base's. ECE
(lower is better) fails when its upper bound rises by more than ``margin``. Any
off-taxonomy tag fails outright. Without CIs (``--bootstrap 0``) the point values are used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HIGHER_IS_BETTER = ("waf1", "accuracy", "macro_f1", "hierarchical_f1")
LOWER_IS_BETTER = ("ece",)


@dataclass(frozen=True)
class GateRow:
    metric: str
    base: float
    new: float
    delta: float  # new - base of the compared bound (or point value)
    compared: str  # "ci95 lower", "ci95 upper" or "point"
    ok: bool


@dataclass(frozen=True)
class CompareResult:
    rows: tuple[GateRow, ...]
    off_taxonomy_rate: float
    margin: float

    @property
    def ok(self) -> bool:
        return self.off_taxonomy_rate == 0 and all(r.ok for r in self.rows)


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
    if not isinstance(data, dict) or "waf1" not in data:
        raise ValueError(f"{path} is not a tagsmith metrics file")
    return data


def _value(metrics: dict[str, Any], key: str) -> float:
    if key == "hierarchical_f1":
        return float(metrics["hierarchical"]["f1"])
    return float(metrics[key])


def _bound(metrics: dict[str, Any], key: str, side: int) -> tuple[float, bool]:
    ci = (metrics.get("ci95") or {}).get(key)
    if isinstance(ci, list) and len(ci) == 2:
        return float(ci[side]), True
    return _value(metrics, key), False


def compare_runs(base: dict[str, Any], new: dict[str, Any], *, margin: float = 1.0) -> CompareResult:
    rows = []
    for key in (*HIGHER_IS_BETTER, *LOWER_IS_BETTER):
        higher = key in HIGHER_IS_BETTER
        side = 0 if higher else 1
        b, b_ci = _bound(base, key, side)
        n, n_ci = _bound(new, key, side)
        delta = n - b
        ok = delta >= -margin if higher else delta <= margin
        compared = ("ci95 lower" if higher else "ci95 upper") if (b_ci and n_ci) else "point"
        if compared == "point":  # mixed: compare points, never a bound with a point
            b, n = _value(base, key), _value(new, key)
            delta = n - b
            ok = delta >= -margin if higher else delta <= margin
        rows.append(GateRow(key, round(b, 3), round(n, 3), round(delta, 3), compared, ok))
    return CompareResult(tuple(rows), float(new.get("off_taxonomy_rate", 0.0)), margin)
