"""Scoring a run: leaderboard, hierarchical, calibration, review, speed metrics with CIs.

``compute_metrics(records, snapshot)`` → the body of ``metrics.json`` (the runner adds
``items_per_second``, ``pipeline``, ``config`` and ``versions``). Scores are percentages
(0–100); rates are fractions (0–1); times are milliseconds.

==========================  =================================================================
key                         meaning
==========================  =================================================================
``n``                       items scored
``waf1``                    MWPD2020 leaderboard metric: mean over the hierarchy levels of the
                            support-weighted F1 (sklearn ``average="weighted"``) at that level
``levels``                  per level (root first): ``weighted_f1``, ``macro_f1``,
                            ``accuracy`` (%), ``support`` (items)
``macro_f1``                mean over levels of the unweighted (macro) F1
``accuracy``                exact match of the predicted leaf with the gold leaf
``hierarchical``            ``precision``/``recall``/``f1`` of ancestor-augmented tag sets
                            (micro-averaged over items; Kiritchenko et al.)
``attributes``              ``precision``/``recall``/``f1`` (%) and ``n`` (items) of
                            (attribute, value) pairs, exact match after lower-casing and
                            trimming, over the items with gold attributes; null without any
``off_taxonomy_rate``       share of items with a returned tag outside the taxonomy (must be
                            0); never rounded, so one bad item never reads as 0
``off_taxonomy_items``      the number of those items
``no_prediction_rate``      share of items for which nothing was returned
``needs_review_rate``       share of items flagged ``needs_review``
``accuracy_not_flagged``    leaf accuracy (%) on the items *not* flagged (what ships
                            unreviewed); null when every item is flagged
``fallback_rate``           share of items answered by the retrieval fallback
``ece``                     expected calibration error (%, ``review_bins`` equal-width bins)
                            of the top tag's confidence against leaf correctness; an item
                            without a prediction counts as confidence 0, wrong
``reliability``             the table behind ``ece``, one row a bin: ``bin`` [low, high),
                            ``count``, mean ``confidence`` and ``accuracy`` (fractions; null
                            for an empty bin)
``review_curve``            what a review threshold t = k / ``review_bins`` would do: rows
                            ``threshold``, ``review_rate`` (share with confidence < t) and
                            ``accuracy_kept`` (% leaf accuracy of the others; null if none)
``latency_ms``              ``p50``/``p95``/``mean`` per item as the tagger reports it
``llm_tokens_per_item``     prompt + generated tokens per item (0 for no-LLM pipelines)
``ci95``                    95% percentile-bootstrap intervals [low, high] (items resampled
                            with a fixed seed) for ``waf1``, ``accuracy``, ``macro_f1``,
                            ``hierarchical_f1`` and ``ece``; {} when ``n_boot`` is 0
``bootstrap``               ``resamples`` and ``seed`` of those intervals
==========================  =================================================================

Level *i* of an item is the *i*-th node of its path, ``"<none>"`` where the path is
shorter. Paths are completed from the snapshot when a record lists only the leaf (or any
part of one path), so leaf-only gold files score the same as full-path ones.

F1 is computed from confusion counts with numpy (``np.bincount``), and a bootstrap
resample is scored as the item weights it induces (multinomial counts), so 1,000
resamples of 3,000 items take well under a second; tests check equality with sklearn.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from evals.records import AttributePair, PredictionRecord, as_records
from retrieval.calibration import ece
from taxonomy import Snapshot

NONE_LABEL = "<none>"
CI_KEYS = ("waf1", "accuracy", "macro_f1", "hierarchical_f1", "ece")
BINS = 10


def _f1s(gold: np.ndarray, pred: np.ndarray, n_labels: int, weights: np.ndarray | None = None) -> tuple[float, float]:
    """(support-weighted F1, macro F1) in %, as sklearn computes them: labels are those
    present in gold or pred; macro averages over them, weighted by gold support."""
    w = np.ones(len(gold)) if weights is None else weights
    hit = gold == pred
    tp = np.bincount(gold[hit], weights=w[hit], minlength=n_labels)
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


def _path(tags: Sequence[str], snapshot: Snapshot) -> tuple[str, ...]:
    """The full root-first path when ``tags`` is (part of) one path of the snapshot."""
    if tags and tags[-1] in snapshot:
        full = snapshot.path(tags[-1])
        if set(tags) <= set(full):
            return full
    return tuple(tags)


def _augmented(tags: Sequence[str], snapshot: Snapshot) -> set[str]:
    out: set[str] = set()
    for tag in tags:
        out.add(tag)
        if tag in snapshot:
            out.update(snapshot.ancestors(tag))
    return out


def _norm_attrs(attrs: Sequence[AttributePair] | None) -> set[tuple[str, str]]:
    return {(a.attribute.strip().lower(), a.value.strip().lower()) for a in attrs or ()}


def _bin_of(conf: np.ndarray, bins: int) -> np.ndarray:
    return np.minimum((conf * bins).astype(np.int64), bins - 1)


def _prf(tp: float, n_pred: float, n_gold: float) -> dict[str, float]:
    p = 100.0 * tp / n_pred if n_pred else 0.0
    r = 100.0 * tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 3), "recall": round(r, 3), "f1": round(f, 3)}


class _Scorer:
    """Per-item arrays once; metrics for any item weighting (bootstrap = multinomial
    counts as weights, which equals scoring the resample)."""

    def __init__(self, records: Sequence[PredictionRecord], snapshot: Snapshot, bins: int) -> None:
        self.n = len(records)
        self.bins = bins
        gold_paths = [_path(r.gold_tags, snapshot) for r in records]
        pred_paths = [_path(r.pred_tags, snapshot) for r in records]
        depth = max(len(p) for p in gold_paths)
        self.levels: list[tuple[np.ndarray, np.ndarray, int]] = []
        for level in range(depth):
            vocab: dict[str, int] = {}
            gold = _encode([p[level] if len(p) > level else NONE_LABEL for p in gold_paths], vocab)
            pred = _encode([p[level] if len(p) > level else NONE_LABEL for p in pred_paths], vocab)
            self.levels.append((gold, pred, len(vocab)))
        self.correct = np.array([bool(p) and p[-1] == g[-1] for g, p in zip(gold_paths, pred_paths, strict=True)], float)
        self.conf = np.array([r.confidence or 0.0 for r in records], dtype=float)
        counts = [(len(g & p), len(p), len(g)) for g, p in
                  ((_augmented(r.gold_tags, snapshot), _augmented(r.pred_tags, snapshot)) for r in records)]
        self.h = tuple(np.array(col, dtype=float) for col in zip(*counts, strict=True))

    def point(self, w: np.ndarray | None = None) -> dict[str, float]:
        weights = np.ones(self.n) if w is None else w
        level_f1 = [_f1s(g, p, k, weights) for g, p, k in self.levels]
        tp, npred, ngold = (float((a * weights).sum()) for a in self.h)
        total = weights.sum()
        return {
            "waf1": float(np.mean([f[0] for f in level_f1])),
            "macro_f1": float(np.mean([f[1] for f in level_f1])),
            "accuracy": float(100.0 * (self.correct * weights).sum() / total) if total else 0.0,
            "hierarchical_f1": _prf(tp, npred, ngold)["f1"],
            "ece": ece(self.conf, self.correct, self.bins, weights),
        }


def _reliability(conf: np.ndarray, correct: np.ndarray, bins: int) -> list[dict[str, Any]]:
    which = _bin_of(conf, bins)
    rows = []
    for b in range(bins):
        mask = which == b
        rows.append({
            "bin": [b / bins, (b + 1) / bins],
            "count": int(mask.sum()),
            "confidence": round(float(conf[mask].mean()), 4) if mask.any() else None,
            "accuracy": round(float(correct[mask].mean()), 4) if mask.any() else None,
        })
    return rows


def _review_curve(conf: np.ndarray, correct: np.ndarray, bins: int) -> list[dict[str, Any]]:
    rows = []
    for k in range(bins + 1):
        threshold = k / bins
        kept = conf >= threshold
        rows.append({
            "threshold": threshold,
            "review_rate": round(float(1.0 - kept.mean()), 4),
            "accuracy_kept": round(float(100.0 * correct[kept].mean()), 3) if kept.any() else None,
        })
    return rows


def _attributes(records: Sequence[PredictionRecord]) -> dict[str, Any] | None:
    with_gold = [r for r in records if r.gold_attributes]
    if not with_gold:
        return None
    tp = n_pred = n_gold = 0
    for r in with_gold:
        gold, pred = _norm_attrs(r.gold_attributes), _norm_attrs(r.pred_attributes)
        tp += len(gold & pred)
        n_pred += len(pred)
        n_gold += len(gold)
    return {**_prf(tp, n_pred, n_gold), "n": len(with_gold)}


def resample_weights(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """The bootstrap resamples of ``n`` items, one a time, as item weights (multinomial
    counts: scoring with them equals scoring the resample). The same seed gives the same
    resamples in every metric, so runs of the same items are resampled alike (paired)."""
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield rng.multinomial(n, np.full(n, 1.0 / n)).astype(float)


def _bootstrap(scorer: _Scorer, n_boot: int, seed: int) -> dict[str, list[float]]:
    if n_boot == 0:
        return {}
    samples: dict[str, list[float]] = {k: [] for k in CI_KEYS}
    for weights in resample_weights(scorer.n, n_boot, seed):
        for key, value in scorer.point(weights).items():
            samples[key].append(value)
    return {k: [round(float(np.percentile(v, 2.5)), 3), round(float(np.percentile(v, 97.5)), 3)]
            for k, v in samples.items()}


def _rate(flags: Sequence[bool]) -> float:
    return float(np.mean(np.asarray(flags, dtype=float)))


def compute_metrics(
    records: Sequence[PredictionRecord | Mapping[str, Any]],
    snapshot: Snapshot,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    review_bins: int = BINS,
) -> dict[str, Any]:
    """Metrics of prediction records (models, or dicts validated as :class:`PredictionRecord`);
    keys as in the module docstring. ``review_bins`` equal-width confidence bins serve
    ``ece``, ``reliability`` and ``review_curve``. Raises ValueError on bad input."""
    if not records:
        raise ValueError("no predictions to score")
    if n_boot < 0 or review_bins < 1:
        raise ValueError("n_boot must be >= 0 and review_bins >= 1")
    recs = as_records(records)
    scorer = _Scorer(recs, snapshot, review_bins)
    point = scorer.point()
    n = len(recs)
    levels = []
    for gold, pred, k in scorer.levels:
        weighted, macro = _f1s(gold, pred, k)
        levels.append({"weighted_f1": round(weighted, 3), "macro_f1": round(macro, 3),
                       "accuracy": round(float(100.0 * (gold == pred).mean()), 3), "support": n})
    tp, npred, ngold = (float(a.sum()) for a in scorer.h)
    flagged = np.array([r.needs_review for r in recs])
    latency = np.array([r.latency_ms for r in recs])
    off_items = sum(1 for r in recs if r.off_taxonomy > 0)
    return {
        "n": n,
        "waf1": round(point["waf1"], 3),
        "levels": levels,
        "macro_f1": round(point["macro_f1"], 3),
        "accuracy": round(point["accuracy"], 3),
        "hierarchical": _prf(tp, npred, ngold),
        "attributes": _attributes(recs),
        "off_taxonomy_rate": off_items / n,
        "off_taxonomy_items": off_items,
        "no_prediction_rate": round(_rate([not r.pred_tags for r in recs]), 4),
        "needs_review_rate": round(float(flagged.mean()), 4),
        "accuracy_not_flagged": (round(float(100.0 * scorer.correct[~flagged].mean()), 3)
                                 if (~flagged).any() else None),
        "fallback_rate": round(_rate([r.fallback_used for r in recs]), 4),
        "ece": round(point["ece"], 3),
        "reliability": _reliability(scorer.conf, scorer.correct, review_bins),
        "review_curve": _review_curve(scorer.conf, scorer.correct, review_bins),
        "latency_ms": {"p50": round(float(np.percentile(latency, 50)), 3),
                       "p95": round(float(np.percentile(latency, 95)), 3),
                       "mean": round(float(latency.mean()), 3)},
        "llm_tokens_per_item": round(float(np.mean([r.llm_tokens for r in recs])), 2),
        "ci95": _bootstrap(scorer, n_boot, seed),
        "bootstrap": {"resamples": n_boot, "seed": seed},
    }


def paired_difference(
    base: Sequence[PredictionRecord | Mapping[str, Any]],
    new: Sequence[PredictionRecord | Mapping[str, Any]],
    snapshot: Snapshot,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """``new`` minus ``base`` on the same items, with paired bootstrap 95% CIs: both runs are
    scored on the same resamples, so the item-to-item difficulty cancels and differences far
    smaller than either run's own CI can be told from noise. Also counts the leaf answers the
    new run fixed and broke. Raises ValueError when the runs cover other items."""
    base_recs, new_recs = as_records(base), as_records(new)
    if [r.id for r in base_recs] != [r.id for r in new_recs]:
        raise ValueError("paired comparison needs the same items in the same order")
    if not base_recs:
        raise ValueError("no predictions to compare")
    a, b = _Scorer(base_recs, snapshot, BINS), _Scorer(new_recs, snapshot, BINS)
    keys = ("waf1", "macro_f1", "accuracy")
    pa, pb = a.point(), b.point()
    n = a.n
    samples: dict[str, list[float]] = {k: [] for k in keys}
    for weights in resample_weights(n, n_boot, seed):
        sa, sb = a.point(weights), b.point(weights)
        for k in keys:
            samples[k].append(sb[k] - sa[k])
    out: dict[str, Any] = {
        "n": n,
        "fixed": int(((b.correct == 1) & (a.correct == 0)).sum()),
        "broken": int(((b.correct == 0) & (a.correct == 1)).sum()),
    }
    for k in keys:
        out[k] = round(pb[k] - pa[k], 3)
        if n_boot:
            out[f"{k}_ci95"] = [round(float(np.percentile(samples[k], 2.5)), 3),
                                round(float(np.percentile(samples[k], 97.5)), 3)]
    return out
