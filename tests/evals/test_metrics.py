"""Metric correctness: hand-computed cases, equality with sklearn, bootstrap behaviour."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score

from evals.metrics import _ece, _f1s, compute_metrics
from taxonomy import Node, Snapshot, TaxonomyDocument


def toy() -> Snapshot:
    n = Node.model_validate
    nodes = [
        n({"id": "A", "name": "A"}), n({"id": "A1", "name": "A1", "parent": "A"}),
        n({"id": "A1a", "name": "A1a", "parent": "A1"}), n({"id": "A1b", "name": "A1b", "parent": "A1"}),
        n({"id": "A2", "name": "A2", "parent": "A"}), n({"id": "A2a", "name": "A2a", "parent": "A2"}),
        n({"id": "B", "name": "B"}), n({"id": "B1", "name": "B1", "parent": "B"}),
        n({"id": "B1a", "name": "B1a", "parent": "B1"}),
    ]
    return Snapshot(TaxonomyDocument(name="toy", nodes=tuple(nodes)), version=1)


def rec(i: int, gold: list[str], pred: list[str], conf: float = 0.9, **extra: Any) -> dict[str, Any]:
    return {"id": str(i), "gold_tags": gold, "pred_tags": pred, "confidence": conf, "needs_review": False,
            "off_taxonomy": 0, "latency_ms": 10.0 * (i + 1), "llm_tokens": 0, "fallback_used": False, **extra}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 6)), min_size=1, max_size=60))
def test_vectorised_f1_equals_sklearn(pairs: list[tuple[int, int]]) -> None:
    gold = np.array([g for g, _ in pairs])
    pred = np.array([p for _, p in pairs])
    weighted, macro = _f1s(gold, pred, 7)
    assert weighted == pytest.approx(100 * f1_score(gold, pred, average="weighted", zero_division=0), abs=1e-9)
    assert macro == pytest.approx(100 * f1_score(gold, pred, average="macro", zero_division=0), abs=1e-9)


def test_hand_computed_case() -> None:
    records = [
        rec(0, ["A", "A1", "A1a"], ["A", "A1", "A1a"], 0.95),
        rec(1, ["A", "A1", "A1b"], ["A", "A1", "A1a"], 0.85),  # right family, wrong class
        rec(2, ["A", "A2", "A2a"], ["B", "B1", "B1a"], 0.65, needs_review=True),  # all wrong
        rec(3, ["B", "B1", "B1a"], ["B", "B1", "B1a"], 0.95),
    ]
    m = compute_metrics(records, toy(), n_boot=0)
    assert m["n"] == 4 and m["accuracy"] == 50.0
    # level 1: gold A A A B, pred A A B B → F1(A)=0.8 (support 3), F1(B)=2/3 (support 1)
    assert m["levels"][0]["weighted_f1"] == pytest.approx(100 * (3 * 0.8 + 2 / 3) / 4, abs=1e-3)
    assert m["waf1"] == pytest.approx(np.mean([lv["weighted_f1"] for lv in m["levels"]]), abs=1e-3)
    # hierarchical: |gold ∩ pred| = 3+2+0+3 over 12 predicted and 12 gold nodes
    assert m["hierarchical"]["precision"] == pytest.approx(100 * 8 / 12, abs=1e-3)
    assert m["needs_review_rate"] == 0.25
    assert m["accuracy_not_flagged"] == pytest.approx(100 * 2 / 3, abs=1e-3)
    # ECE: bins 0.9 (conf .95,.95 acc 1), 0.8 (.85, acc 0), 0.6 (.65, acc 0)
    assert m["ece"] == pytest.approx(100 * (2 * 0.05 + 0.85 + 0.65) / 4, abs=1e-3)
    assert m["latency_ms"]["p50"] == 25.0
    assert m["off_taxonomy_rate"] == 0 and m["attributes"] is None


def test_hierarchical_works_with_leaf_only_gold() -> None:
    m = compute_metrics([rec(0, ["A1b"], ["A1a"])], toy(), n_boot=0)
    # augmented: {A1b, A1, A} vs {A1a, A1, A} → 2 of 3
    assert m["hierarchical"]["f1"] == pytest.approx(100 * 2 / 3, abs=1e-3)


def test_off_taxonomy_and_attributes() -> None:
    records = [
        rec(0, ["A", "A1", "A1a"], ["A", "A1", "A1a"], off_taxonomy=1,
            gold_attributes=[{"attribute": "Color", "value": "Red "}, {"attribute": "size", "value": "M"}],
            pred_attributes=[{"attribute": "color", "value": "red"}, {"attribute": "size", "value": "L"}]),
        rec(1, ["B", "B1", "B1a"], []),
    ]
    m = compute_metrics(records, toy(), n_boot=0)
    assert m["off_taxonomy_rate"] == 0.5
    assert m["attributes"] == {"precision": 50.0, "recall": 50.0, "f1": 50.0, "n": 1}
    assert m["levels"][0]["accuracy"] == 50.0  # the empty prediction counts as "<none>"


def test_ece_known_cases() -> None:
    assert _ece(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.0
    assert _ece(np.array([0.95, 0.95]), np.array([0.0, 0.0])) == pytest.approx(95.0)
    assert _ece(np.array([0.55, 0.55]), np.array([1.0, 0.0])) == pytest.approx(5.0)


def test_bootstrap_ci_is_deterministic_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(3)
    leaves = [("A", "A1", "A1a"), ("A", "A1", "A1b"), ("A", "A2", "A2a"), ("B", "B1", "B1a")]
    records = []
    for i in range(300):
        gold = leaves[int(rng.integers(4))]
        pred = gold if rng.random() < 0.7 else leaves[int(rng.integers(4))]
        records.append(rec(i, list(gold), list(pred), float(rng.random())))
    a = compute_metrics(records, toy(), n_boot=300, seed=5)
    b = compute_metrics(records, toy(), n_boot=300, seed=5)
    c = compute_metrics(records, toy(), n_boot=300, seed=6)
    assert a["ci95"] == b["ci95"] and a["ci95"] != c["ci95"]
    for key in ("waf1", "accuracy", "macro_f1", "ece"):
        low, high = a["ci95"][key]
        assert low <= a[key] <= high and high - low > 0
    low, high = a["ci95"]["hierarchical_f1"]
    assert low <= a["hierarchical"]["f1"] <= high


def test_empty_is_an_error() -> None:
    with pytest.raises(ValueError, match="no predictions"):
        compute_metrics([], toy())
