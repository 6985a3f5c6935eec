"""A 3-level toy taxonomy (loaded through the real JSON format) and prediction records."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from taxonomy import Snapshot, load_taxonomy

#   A ─ A1 ─ A1a, A1b        B ─ B1 ─ B1a
#     └ A2 ─ A2a
PARENTS = {"A": None, "A1": "A", "A1a": "A1", "A1b": "A1", "A2": "A", "A2a": "A2", "B": None, "B1": "B", "B1a": "B1"}
LEAVES = [["A", "A1", "A1a"], ["A", "A1", "A1b"], ["A", "A2", "A2a"], ["B", "B1", "B1a"]]


def write_toy_taxonomy(path: Path) -> Path:
    """The toy taxonomy in the shared files' node schema (derived fields included)."""
    def path_of(node: str) -> list[str]:
        parent = PARENTS[node]
        return [*path_of(parent), node] if parent else [node]

    nodes = [{"id": k, "name": f"Node {k}", "parent": p, "level": len(path_of(k)), "path": path_of(k),
              "is_leaf": k not in PARENTS.values()} for k, p in PARENTS.items()]
    path.write_text(json.dumps({"name": "toy", "nodes": nodes}), encoding="utf-8")
    return path


def toy() -> Snapshot:
    with tempfile.TemporaryDirectory() as tmp:
        return load_taxonomy(write_toy_taxonomy(Path(tmp) / "toy.json"))


def rec(i: int, gold: list[str], pred: list[str], conf: float | None = 0.9, **extra: Any) -> dict[str, Any]:
    return {"id": str(i), "gold_tags": gold, "pred_tags": pred, "confidence": conf, "needs_review": False,
            "off_taxonomy": 0, "latency_ms": 10.0 * (i + 1), "llm_tokens": 0, "fallback_used": False,
            "gold_attributes": None, "pred_attributes": None, "result": None, **extra}
