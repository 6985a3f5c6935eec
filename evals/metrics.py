"""Scoring a run: leaderboard, hierarchical, calibration, review, speed metrics with CIs.

``compute_metrics(records, snapshot)`` → the body of ``metrics.json``. Scores are
percentages (0–100); rates are fractions (0–1); times are milliseconds.

==========================  =================================================================
key                         meaning
==========================  =================================================================
``n``                       items scored
``waf1``                    MWPD2020 leaderboard metric: mean over the hierarchy levels of the
                            support-weighted F1 (sklearn ``average="weighted"``) at that level
``levels``                  per level: ``weighted_f1``, ``macro_f1``, ``accuracy``, ``support``
``macro_f1``                mean over levels of the unweighted (macro) F1
``accuracy``                exact match of the predicted leaf with the gold leaf
``hierarchical``            ``precision``/``recall``/``f1`` of ancestor-augmented tag sets
                            (micro-averaged over items; Kiritchenko et al.)
``attributes``              ``precision``/``recall``/``f1``/``n`` of (attribute, value) pairs,
                            exact match after lower-casing and trimming; null without gold
``off_taxonomy_rate``       share of items with a returned tag outside the taxonomy (must be 0)
``needs_review_rate``       share of items flagged ``needs_review``
``accuracy_not_flagged``    leaf accuracy on the items *not* flagged (what ships unreviewed)
``fallback_rate``           share of items answered by the retrieval fallback
``ece``                     expected calibration error (10 equal-width bins, %) of the top
                            tag's confidence against leaf correctness
``reliability``             the table behind ``ece``: bin bounds, count, confidence, accuracy
``latency_ms``              ``p50``/``p95``/``mean`` per item as the tagger reports it
``llm_tokens_per_item``     prompt + generated tokens per item (0 for no-LLM pipelines)
``ci95``                    95% percentile-bootstrap intervals (items resampled with a fixed
                            seed) for waf1, accuracy, macro_f1, hierarchical_f1 and ece
==========================  =================================================================

F1 is computed from confusion counts with numpy, so 1,000 bootstrap resamples of 3,000
items take about a second (tests check equality with sklearn).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from taxonomy import Snapshot

NONE_LABEL = "<none>"
CI_KEYS = ("waf1", "accuracy", "macro_f1", "hierarchical_f1", "ece")
BINS = 10


def _f1s(gold: np.ndarray, pred: np.ndarray, n_labels: int, weights: np.ndarray | None = None) -> tuple[float, float]:
    """(support-weighted F1, macro F1) in %, as sklearn computes them: labels are those
    present in gold or pred; macro averages over them, weighted by gold support."""
    w = np.ones(len(gold)) if weights is None else weights
    tp = np.bincount(gold[gold == pred], weights=w[gold == pred], minlength=n_labels)
    support = np.bincount(gold, weights=w, minlength=n_labels)
    predicted = np.bincount(pred, weights=w, minlength=n_labels)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros(n_labels), where=denom > 0)
    present = denom > 0
    total = support.sum()
    weighted = float((f1 * support).sum() / total) if total > 0 else 0.0
    macro = float(f1[present].mean()) if present.any() else 0.0
    return 100.0 * weighted, 100.0 * macro


def _encode(labels: Sequence[str], vocab: dict[str, int]) -> np.ndarray:
    return np.array([vocab.setdefault(x, len(vocab)) for x in labels], dtype=np.int64)


def _augmented(tags: Sequence[str], snapshot: Snapshot) -> set[str]:
    out: set[str] = set()
    for tag in tags:
        out.add(tag)
        if tag in snapshot:
            out.update(snapshot.ancestors(tag))
    return out


def _norm_attrs(attrs: Sequence[Mapping[str, Any]] | None) -> set[tuple[str, str]]:
    return {(str(a["attribute"]).strip().lower(), str(a["value"]).strip().lower()) for a in attrs or ()}


def _ece(conf: np.ndarray, correct: np.ndarray, weights: np.ndarray | None = None) -> float:
    w = np.ones(len(conf)) if weights is None else weights
    bins = np.minimum((conf * BINS).astype(np.int64), BINS - 1)
    conf_sum = np.bincount(bins, weights=w * conf, minlength=BINS)
    acc_sum = np.bincount(bins, weights=w * correct, minlength=BINS)
    n = w.sum()
    return float(100.0 * np.abs(conf_sum - acc_sum).sum() / n) if n > 0 else 0.0


def _prf(tp: float, n_pred: float, n_gold: float) -> dict[str, float]:
    p = 100.0 * tp / n_pred if n_pred else 0.0
    r = 100.0 * tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 3), "recall": round(r, 3), "f1": round(f, 3)}


class _Scorer:
    """Per-item arrays once; metrics for any item weighting (bootstrap = multinomial
    counts as weights, which equals scoring the resample)."""

    def __init__(self, records: Sequence[Mapping[str, Any]], snapshot: Snapshot) -> None:
        self.n = len(records)
        depth = max((len(r["gold_tags"]) for r in records), default=0)
        self.levels: list[tuple[np.ndarray, np.ndarray, int]] = []
        for level in range(depth):
            vocab: dict[str, int] = {}
            gold = _encode([r["gold_tags"][level] if len(r["gold_tags"]) > level else NONE_LABEL for r in records], vocab)
            pred = _encode([r["pred_tags"][level] if len(r["pred_tags"]) > level else NONE_LABEL for r in records], vocab)
            self.levels.append((gold, pred, len(vocab)))
        self.correct = np.array(
            [bool(r["pred_tags"]) and r["pred_tags"][-1] == r["gold_tags"][-1] for r in records], dtype=float
        )
        self.conf = np.array([float(r.get("confidence") or 0.0) for r in records])
        self.conf = np.clip(self.conf, 0.0, 1.0)
        h_tp, h_pred, h_gold = [], [], []
        for r in records:
            g, p = _augmented(r["gold_tags"], snapshot), _augmented(r["pred_tags"], snapshot)
            h_tp.append(len(g & p))
            h_pred.append(len(p))
            h_gold.append(len(g))
        self.h = (np.array(h_tp, float), np.array(h_pred, float), np.array(h_gold, float))

    def point(self, w: np.ndarray | None = None) -> dict[str, float]:
        weights = np.ones(self.n) if w is None else w
        level_f1 = [_f1s(g, p, k, weights) for g, p, k in self.levels]
        tp, npred, ngold = (float((a * weights).sum()) for a in self.h)
        hier = _prf(tp, npred, ngold)
        total = weights.sum()
        return {
            "waf1": float(np.mean([f[0] for f in level_f1])) if level_f1 else 0.0,
            "macro_f1": float(np.mean([f[1] for f in level_f1])) if level_f1 else 0.0,
            "accuracy": float(100.0 * (self.correct * weights).sum() / total) if total else 0.0,
            "hierarchical_f1": hier["f1"],
            "ece": _ece(self.conf, self.correct, weights),
        }


def _reliability(conf: np.ndarray, correct: np.ndarray) -> list[dict[str, Any]]:
    bins = np.minimum((conf * BINS).astype(np.int64), BINS - 1)
    rows = []
    for b in range(BINS):
        mask = bins == b
        rows.append({
            "bin": [b / BINS, (b + 1) / BINS],
            "count": int(mask.sum()),
            "confidence": round(float(conf[mask].mean()), 4) if mask.any() else None,
            "accuracy": round(float(correct[mask].mean()), 4) if mask.any() else None,
        })
    return rows


def compute_metrics(
    records: Sequence[Mapping[str, Any]], snapshot: Snapshot, *, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Metrics of prediction records (see :mod:`evals.runner` for their fields)."""
    if not records:
        raise ValueError("no predictions to score")
    scorer = _Scorer(records, snapshot)
    point = scorer.point()
    n = len(records)
    levels = []
    for gold, pred, k in scorer.levels:
        weighted, macro = _f1s(gold, pred, k)
        levels.append({"weighted_f1": round(weighted, 3), "macro_f1": round(macro, 3),
                       "accuracy": round(float(100.0 * (gold == pred).mean()), 3), "support": n})
    tp, npred, ngold = (float(a.sum()) for a in scorer.h)
    with_attrs = [r for r in records if r.get("gold_attributes")]
    attributes = None
    if with_attrs:
        a_tp = a_pred = a_gold = 0
        for r in with_attrs:
            gold_a, pred_a = _norm_attrs(r["gold_attributes"]), _norm_attrs(r.get("pred_attributes"))
            a_tp += len(gold_a & pred_a)
            a_pred += len(pred_a)
            a_gold += len(gold_a)
        attributes = {**_prf(a_tp, a_pred, a_gold), "n": len(with_attrs)}
    flagged = np.array([bool(r.get("needs_review")) for r in records])
    latency = np.array([float(r.get("latency_ms") or 0.0) for r in records])
    ci95: dict[str, list[float]] = {}
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        samples: dict[str, list[float]] = {k: [] for k in CI_KEYS}
        for _ in range(n_boot):
            weights = rng.multinomial(n, np.full(n, 1.0 / n)).astype(float)
            for key, value in scorer.point(weights).items():
                samples[key].append(value)
        ci95 = {k: [round(float(np.percentile(v, 2.5)), 3), round(float(np.percentile(v, 97.5)), 3)]
                for k, v in samples.items()}
    not_flagged = ~flagged
    return {
        "n": n,
        "waf1": round(point["waf1"], 3),
        "levels": levels,
        "macro_f1": round(point["macro_f1"], 3),
        "accuracy": round(point["accuracy"], 3),
        "hierarchical": _prf(tp, npred, ngold),
        "attributes": attributes,
        "off_taxonomy_rate": round(float(np.mean([int(r.get("off_taxonomy") or 0) > 0 for r in records])), 6),
        "needs_review_rate": round(float(flagged.mean()), 4),
        "accuracy_not_flagged": round(float(100.0 * scorer.correct[not_flagged].mean()), 3) if not_flagged.any() else None,
        "fallback_rate": round(float(np.mean([bool(r.get("fallback_used")) for r in records])), 4),
        "ece": round(point["ece"], 3),
        "reliability": _reliability(scorer.conf, scorer.correct),
        "latency_ms": {"p50": round(float(np.percentile(latency, 50)), 3),
                       "p95": round(float(np.percentile(latency, 95)), 3),
                       "mean": round(float(latency.mean()), 3)},
        "llm_tokens_per_item": round(float(np.mean([int(r.get("llm_tokens") or 0) for r in records])), 2),
        "ci95": ci95,
        "bootstrap": {"resamples": n_boot, "seed": seed},
    }
