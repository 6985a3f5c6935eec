"""Metric correctness: hand-computed cases, equality with sklearn, bootstrap behaviour."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score

from evals.metrics import _f1s, _Scorer, compute_metrics, paired_difference
from evals.records import PredictionRecord, as_records, read_predictions
from retrieval.calibration import ece as _ece  # the one ECE, which the metrics use

from .toy import LEAVES, rec, toy

HAND = [
    rec(0, ["A", "A1", "A1a"], ["A", "A1", "A1a"], 0.95),
    rec(1, ["A", "A1", "A1b"], ["A", "A1", "A1a"], 0.85),  # right family, wrong class
    rec(2, ["A", "A2", "A2a"], ["B", "B1", "B1a"], 0.65, needs_review=True),  # all wrong
    rec(3, ["B", "B1", "B1a"], ["B", "B1", "B1a"], 0.95),
]


def random_records(n: int, seed: int, accuracy: float = 0.7) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        gold = LEAVES[int(rng.integers(4))]
        pred = gold if rng.random() < accuracy else LEAVES[int(rng.integers(4))]
        out.append(rec(i, list(gold), list(pred), float(rng.random())))
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 6)), min_size=1, max_size=60))
def test_vectorised_f1_equals_sklearn(pairs: list[tuple[int, int]]) -> None:
    gold = np.array([g for g, _ in pairs])
    pred = np.array([p for _, p in pairs])
    weighted, macro = _f1s(gold, pred, 7)
    assert weighted == pytest.approx(100 * f1_score(gold, pred, average="weighted", zero_division=0), abs=1e-9)
    assert macro == pytest.approx(100 * f1_score(gold, pred, average="macro", zero_division=0), abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=40), st.integers(0, 2**16))
def test_weighted_f1_equals_sklearn_on_the_resample(pairs: list[tuple[int, int]], seed: int) -> None:
    """Scoring with multinomial counts as weights == sklearn on the materialised resample."""
    gold = np.array([g for g, _ in pairs])
    pred = np.array([p for _, p in pairs])
    counts = np.random.default_rng(seed).multinomial(len(pairs), np.full(len(pairs), 1 / len(pairs)))
    weighted, macro = _f1s(gold, pred, 5, counts.astype(float))
    g, p = np.repeat(gold, counts), np.repeat(pred, counts)
    assert weighted == pytest.approx(100 * f1_score(g, p, average="weighted", zero_division=0), abs=1e-9)
    assert macro == pytest.approx(100 * f1_score(g, p, average="macro", zero_division=0), abs=1e-9)


def test_hand_computed_case() -> None:
    m = compute_metrics(HAND, toy(), n_boot=0)
    assert m["n"] == 4 and m["accuracy"] == 50.0
    # level 1: gold A A A B, pred A A B B → F1(A)=4/5 (support 3), F1(B)=2/3 (support 1)
    # level 2: gold A1 A1 A2 B1, pred A1 A1 B1 B1 → F1(A1)=1 (2), F1(A2)=0 (1), F1(B1)=2/3 (1)
    # level 3: F1(A1a)=2/3, F1(A1b)=0, F1(A2a)=0, F1(B1a)=2/3, support 1 each
    expected = [((3 * 0.8 + 2 / 3) / 4, (0.8 + 2 / 3) / 2), ((2 + 2 / 3) / 4, (1 + 2 / 3) / 3), (1 / 3, 1 / 3)]
    for level, (weighted, macro) in zip(m["levels"], expected, strict=True):
        assert level["weighted_f1"] == pytest.approx(100 * weighted, abs=1e-3)
        assert level["macro_f1"] == pytest.approx(100 * macro, abs=1e-3)
    assert [lv["accuracy"] for lv in m["levels"]] == [75.0, 75.0, 50.0]
    assert m["waf1"] == pytest.approx(100 * np.mean([w for w, _ in expected]), abs=1e-3)
    assert m["macro_f1"] == pytest.approx(100 * np.mean([mac for _, mac in expected]), abs=1e-3)
    # hierarchical: |gold ∩ pred| = 3+2+0+3 over 12 predicted and 12 gold nodes
    assert m["hierarchical"] == pytest.approx({"precision": 100 * 8 / 12, "recall": 100 * 8 / 12, "f1": 100 * 8 / 12}, abs=1e-3)
    assert m["needs_review_rate"] == 0.25
    assert m["accuracy_not_flagged"] == pytest.approx(100 * 2 / 3, abs=1e-3)
    assert m["latency_ms"] == {"p50": 25.0, "p95": pytest.approx(38.5), "mean": 25.0}
    assert m["off_taxonomy_rate"] == 0 and m["off_taxonomy_items"] == 0 and m["attributes"] is None
    assert m["no_prediction_rate"] == 0 and m["ci95"] == {} and m["bootstrap"] == {"resamples": 0, "seed": 0}


def test_calibration_reliability_and_review_curve_by_hand() -> None:
    m = compute_metrics(HAND, toy(), n_boot=0)
    # bins: 0.9 (conf .95 ×2, both right), 0.8 (.85, wrong), 0.6 (.65, wrong)
    assert m["ece"] == pytest.approx(100 * (2 * 0.05 + 0.85 + 0.65) / 4, abs=1e-3)
    rows = {round(r["bin"][0], 1): r for r in m["reliability"]}
    assert len(m["reliability"]) == 10
    assert rows[0.9] == {"bin": [0.9, 1.0], "count": 2, "confidence": 0.95, "accuracy": 1.0}
    assert rows[0.8]["count"] == 1 and rows[0.8]["accuracy"] == 0.0
    assert rows[0.0] == {"bin": [0.0, 0.1], "count": 0, "confidence": None, "accuracy": None}
    curve = {round(r["threshold"], 1): r for r in m["review_curve"]}
    assert curve[0.0] == {"threshold": 0.0, "review_rate": 0.0, "accuracy_kept": 50.0}
    assert curve[0.7]["review_rate"] == 0.25 and curve[0.7]["accuracy_kept"] == pytest.approx(100 * 2 / 3, abs=1e-3)
    assert curve[0.9] == {"threshold": 0.9, "review_rate": 0.5, "accuracy_kept": 100.0}
    assert curve[1.0] == {"threshold": 1.0, "review_rate": 1.0, "accuracy_kept": None}
    # review_bins sets the bins of all three
    five = compute_metrics(HAND, toy(), n_boot=0, review_bins=5)
    assert len(five["reliability"]) == 5 and len(five["review_curve"]) == 6
    assert five["ece"] == pytest.approx(100 * (abs(0.95 + 0.95 + 0.85 - 2) + 0.65) / 4, abs=1e-3)


def test_ece_known_cases() -> None:
    assert _ece(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.0
    assert _ece(np.array([0.95, 0.95]), np.array([0.0, 0.0])) == pytest.approx(95.0)
    assert _ece(np.array([0.55, 0.55]), np.array([1.0, 0.0])) == pytest.approx(5.0)
    # over- and under-confidence in different bins do not cancel out
    assert _ece(np.array([0.15, 0.85]), np.array([1.0, 0.0])) == pytest.approx(100 * (0.85 + 0.85) / 2)


def test_leaf_only_gold_scores_like_full_paths() -> None:
    full = [rec(i, g, p, 0.8) for i, (g, p) in enumerate(
        [(LEAVES[0], LEAVES[0]), (LEAVES[1], LEAVES[0]), (LEAVES[2], LEAVES[3]), (LEAVES[3], LEAVES[3])])]
    leaf_only = [{**r, "gold_tags": r["gold_tags"][-1:], "pred_tags": r["pred_tags"][-1:]} for r in full]
    a, b = compute_metrics(full, toy(), n_boot=0), compute_metrics(leaf_only, toy(), n_boot=0)
    assert len(b["levels"]) == 3
    for key in ("waf1", "levels", "macro_f1", "accuracy", "hierarchical", "ece"):
        assert a[key] == b[key], key
    # augmented sets: {A1b, A1, A} vs {A1a, A1, A} → 2 of 3
    one = compute_metrics([rec(0, ["A1b"], ["A1a"])], toy(), n_boot=0)
    assert one["hierarchical"]["f1"] == pytest.approx(100 * 2 / 3, abs=1e-3)


def test_empty_and_unknown_predictions_count_as_wrong_at_every_level() -> None:
    records = [rec(0, LEAVES[0], LEAVES[0]), rec(1, LEAVES[3], [], None), rec(2, LEAVES[3], ["ZZZ"], 0.5, off_taxonomy=1)]
    m = compute_metrics(records, toy(), n_boot=0)
    assert [lv["accuracy"] for lv in m["levels"]] == pytest.approx([100 / 3] * 3, abs=1e-3)
    assert m["no_prediction_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["off_taxonomy_items"] == 1
    assert m["reliability"][0]["count"] == 1  # no prediction = confidence 0


def test_off_taxonomy_rate_is_never_rounded_away() -> None:
    records = [rec(i, LEAVES[0], LEAVES[0]) for i in range(7)]
    records[3]["off_taxonomy"] = 2
    m = compute_metrics(records, toy(), n_boot=0)
    assert m["off_taxonomy_rate"] == 1 / 7 and m["off_taxonomy_items"] == 1


def test_attributes() -> None:
    records = [
        rec(0, LEAVES[0], LEAVES[0],
            gold_attributes=[{"attribute": "Color", "value": "Red "}, {"attribute": "size", "value": "M"},
                             {"attribute": "storage", "value": 128}],
            pred_attributes=[{"attribute": "color", "value": "red"}, {"attribute": "size", "value": "L"},
                             {"attribute": "storage", "value": "128"}]),
        rec(1, LEAVES[3], LEAVES[3]),  # no gold attributes: not counted
        rec(2, LEAVES[3], LEAVES[3], gold_attributes=[{"attribute": "color", "value": "blue"}]),
    ]
    m = compute_metrics(records, toy(), n_boot=0)
    # tp 2 (color, storage); 3 predicted, 4 gold
    assert m["attributes"] == pytest.approx({"precision": 100 * 2 / 3, "recall": 50.0, "f1": 100 * 4 / 7, "n": 2}, abs=1e-3)


def test_bootstrap_ci_is_deterministic_and_brackets_the_estimate() -> None:
    records = random_records(300, 3)
    a = compute_metrics(records, toy(), n_boot=300, seed=5)
    b = compute_metrics(records, toy(), n_boot=300, seed=5)
    c = compute_metrics(records, toy(), n_boot=300, seed=6)
    assert a["ci95"] == b["ci95"] and a["ci95"] != c["ci95"]
    assert set(a["ci95"]) == {"waf1", "accuracy", "macro_f1", "hierarchical_f1", "ece"}
    for key in ("waf1", "accuracy", "macro_f1", "ece"):
        low, high = a["ci95"][key]
        assert low <= a[key] <= high and high - low > 0
    low, high = a["ci95"]["hierarchical_f1"]
    assert low <= a["hierarchical"]["f1"] <= high
    assert a["bootstrap"] == {"resamples": 300, "seed": 5}


def test_bootstrap_weights_score_exactly_the_resample() -> None:
    """What the CI resamples: weights from multinomial counts == scoring the duplicated records."""
    records = random_records(120, 8)
    snap = toy()
    scorer = _Scorer(as_records(records), snap, 10)
    counts = np.random.default_rng(1).multinomial(120, np.full(120, 1 / 120))
    resample = [records[i] for i in np.repeat(np.arange(120), counts)]
    direct = compute_metrics(resample, snap, n_boot=0)
    weighted = scorer.point(counts.astype(float))
    for key in ("waf1", "macro_f1", "accuracy", "ece"):
        assert weighted[key] == pytest.approx(direct[key], abs=1e-3), key
    assert weighted["hierarchical_f1"] == pytest.approx(direct["hierarchical"]["f1"], abs=1e-3)
    # and the leaderboard metric of the resample is sklearn's
    sk = np.mean([f1_score([r["gold_tags"][k] for r in resample], [r["pred_tags"][k] for r in resample],
                           average="weighted") for k in range(3)])
    assert weighted["waf1"] == pytest.approx(100 * sk, abs=1e-9)


def test_bad_records_are_refused_with_their_ids() -> None:
    with pytest.raises(ValueError, match="no predictions"):
        compute_metrics([], toy())
    with pytest.raises(ValueError, match=r"record 1 \('1'\): confidence"):
        compute_metrics([rec(0, LEAVES[0], LEAVES[0]), rec(1, LEAVES[0], LEAVES[0], 1.5)], toy())
    with pytest.raises(ValueError, match="confidence"):
        compute_metrics([rec(0, LEAVES[0], LEAVES[0], float("nan"))], toy())
    with pytest.raises(ValueError, match="gold_tags"):
        compute_metrics([{**rec(0, LEAVES[0], LEAVES[0]), "gold_tags": []}], toy())
    with pytest.raises(ValueError, match="review_bins"):
        compute_metrics([rec(0, LEAVES[0], LEAVES[0])], toy(), review_bins=0)
    # rounding overshoot is clipped, models are accepted as they are
    ok = PredictionRecord.model_validate(rec(0, LEAVES[0], LEAVES[0], 1.0000001))
    assert ok.confidence == 1.0
    assert compute_metrics([ok], toy(), n_boot=0)["accuracy"] == 100.0


def test_read_predictions_merges_timings_and_names_bad_lines(tmp_path: Path) -> None:
    preds, timings = tmp_path / "predictions.jsonl", tmp_path / "timings.jsonl"
    rows = [{k: v for k, v in rec(i, LEAVES[i], LEAVES[i]).items() if k != "latency_ms"} for i in range(3)]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    timings.write_text("".join(json.dumps({"id": str(i), "latency_ms": 5.0 + i, "wall_ms": 1.0}) + "\n" for i in range(3)))
    records = read_predictions(preds, timings)
    assert [r.latency_ms for r in records] == [5.0, 6.0, 7.0]
    assert [r.latency_ms for r in read_predictions(preds)] == [0.0, 0.0, 0.0]
    with preds.open("a") as fh:
        fh.write('{"id": "3", "gold_tags": ["A"], "pred_tags": []}\n{"id": "4", "gold_t')  # a torn last line
    with pytest.raises(ValueError, match=r"line 6: .*JSON|line 6: Unterminated"):
        read_predictions(preds, timings)


def test_paired_difference_counts_changes_and_its_ci_is_tighter_than_either_run() -> None:
    snap = toy()
    rng = np.random.default_rng(3)
    gold = [LEAVES[int(i)] for i in rng.integers(0, 4, 400)]
    # base right on 70% of items; new = base with 8 answers fixed and 2 broken
    base_pred = [g if rng.random() < 0.7 else LEAVES[(LEAVES.index(g) + 1) % 4] for g in gold]
    new_pred = list(base_pred)
    wrong = [i for i, (g, p) in enumerate(zip(gold, base_pred, strict=True)) if g != p]
    right = [i for i, (g, p) in enumerate(zip(gold, base_pred, strict=True)) if g == p]
    for i in wrong[:8]:
        new_pred[i] = gold[i]
    for i in right[:2]:
        new_pred[i] = LEAVES[(LEAVES.index(gold[i]) + 2) % 4]
    base = [rec(i, g, p) for i, (g, p) in enumerate(zip(gold, base_pred, strict=True))]
    new = [rec(i, g, p) for i, (g, p) in enumerate(zip(gold, new_pred, strict=True))]
    d = paired_difference(base, new, snap, n_boot=500, seed=0)
    assert (d["n"], d["fixed"], d["broken"]) == (400, 8, 2)
    assert d["accuracy"] == pytest.approx(100 * 6 / 400)
    low, high = d["accuracy_ci95"]
    assert low <= d["accuracy"] <= high and high - low < 4  # ~ 4 sd of 10 discordant items in 400
    own = compute_metrics(new, snap, n_boot=500, seed=0)["ci95"]["accuracy"]
    assert (high - low) < (own[1] - own[0]) / 2  # pairing removes the items' shared difficulty
    assert d["waf1"] == pytest.approx(compute_metrics(new, snap, n_boot=0)["waf1"]
                                      - compute_metrics(base, snap, n_boot=0)["waf1"], abs=1e-2)
    identical = paired_difference(base, base, snap, n_boot=50)
    assert identical["waf1"] == 0 and identical["waf1_ci95"] == [0, 0] and identical["fixed"] == 0
    with pytest.raises(ValueError, match="same items"):
        paired_difference(base, new[::-1], snap)
