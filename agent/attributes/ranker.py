"""Scores attribute candidates: a gradient-boosted classifier trained on the example pool
(leave-one-out statistics, so it learns from what it would have seen on a new product),
its acceptance threshold fitted on out-of-fold predictions to maximise F1 over
(product, attribute) pairs. With too few labelled values to learn from (a new catalog,
the shipped examples), a fixed prior scores taxonomy value names found in the text.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from agent.attributes.candidates import FEATURES, AttributeCandidate, feature_row

if TYPE_CHECKING:
    from threadpoolctl import ThreadpoolController

MIN_POSITIVES = 30
DEFAULT_THRESHOLD = 0.5


@dataclass
class Group:
    """The candidates of one (product, attribute) and whether it has a gold value."""

    candidates: list[AttributeCandidate]
    labels: list[bool]
    has_gold: bool


class CandidateRanker:
    def __init__(self, model: object | None = None, threshold: float = DEFAULT_THRESHOLD) -> None:
        self.model = model
        self.threshold = threshold

    @property
    def trained(self) -> bool:
        return self.model is not None

    @classmethod
    def fit(cls, groups: Sequence[Group], *, seed: int = 0) -> CandidateRanker:
        positives = sum(sum(g.labels) for g in groups)
        if positives < MIN_POSITIVES:
            return cls()
        # out-of-fold probabilities (2 folds by group) choose the threshold honestly
        folds = [groups[0::2], groups[1::2]]
        oof: list[tuple[Group, np.ndarray]] = []
        for i in range(2):
            model = _train(folds[1 - i], seed)
            if model is None:
                continue
            probs = _proba(model, [c for g in folds[i] for c in g.candidates])
            at = 0
            for g in folds[i]:
                oof.append((g, probs[at : at + len(g.candidates)]))
                at += len(g.candidates)
        threshold = _best_threshold(oof) if oof else DEFAULT_THRESHOLD
        return cls(_train(groups, seed), threshold)

    def score(self, candidates: Sequence[AttributeCandidate]) -> None:
        if not candidates:
            return
        if self.model is None:
            for c in candidates:
                c.score = prior_score(c)
            return
        for c, p in zip(candidates, _proba(self.model, candidates), strict=True):
            c.score = float(p)


def prior_score(c: AttributeCandidate) -> float:
    """Without training data: a taxonomy value name (or synonym) in the title is likely the
    value, in the description less so; neighbours' values alone are not trusted."""
    f = c.features
    if f.get("from_lexicon"):
        base = 0.7 if f.get("in_title") else 0.55
        return min(0.95, base + 0.2 * f.get("neighbour_vote", 0.0))
    if f.get("neighbour_only"):
        return 0.3 * f.get("neighbour_vote", 0.0)
    return 0.2 * f.get("shape_share", 0.0)


def _train(groups: Sequence[Group], seed: int) -> object | None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    rows = [feature_row(c) for g in groups for c in g.candidates]
    labels = [y for g in groups for y in g.labels]
    if not rows or len(set(labels)) < 2:
        return None
    model = HistGradientBoostingClassifier(
        max_iter=100, learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=10,
        l2_regularization=1.0, random_state=seed,
    )
    # one thread: OpenMP over a few thousand rows costs more in contention than it saves,
    # and the service has its own threads (measured: 5.7 s vs 60 s on 2 busy cores)
    with threadpool_limits(limits=1):
        model.fit(np.asarray(rows, dtype=np.float64), np.asarray(labels, dtype=np.int8))
    return model  # type: ignore[no-any-return]


@functools.cache
def _openmp() -> ThreadpoolController:
    # built once: threadpool_limits() inspects every loaded library on each entry (~6 ms),
    # a prepared controller's limit() costs ~0.05 ms
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _proba(model: object, candidates: Sequence[AttributeCandidate]) -> np.ndarray:
    x = np.asarray([feature_row(c) for c in candidates], dtype=np.float64)
    if x.size == 0:
        return np.zeros(0)
    # one thread: a product's few candidates are far too small for OpenMP, whose threads
    # otherwise wait on the cores torch/faiss and the service's own threads hold (measured on
    # 2 busy cores: 17 ms per call without the limit, 0.7 ms with it)
    with _openmp().limit(limits=1, user_api="openmp"):
        return np.asarray(model.predict_proba(x)[:, 1])  # type: ignore[attr-defined]


def _best_threshold(oof: Sequence[tuple[Group, np.ndarray]]) -> float:
    """The acceptance threshold maximising F1 = 2·VC / (2·VC + VW + VN + NV + VW)… as the
    WDC-PAVE metric counts: per group, the top candidate is correct (VC), wrong (VW), a value
    where there is none (VN), or nothing predicted though there is a value (NV)."""
    tops = []
    for g, probs in oof:
        if len(probs) == 0:
            tops.append((0.0, False, g.has_gold))
            continue
        i = int(np.argmax(probs))
        tops.append((float(probs[i]), bool(g.labels[i]), g.has_gold))
    best, best_f1 = DEFAULT_THRESHOLD, -1.0
    for t in np.linspace(0.05, 0.95, 91):
        vc = vw = vn = nv = 0
        for p, correct, has_gold in tops:
            if p >= t:
                if correct:
                    vc += 1
                elif has_gold:
                    vw += 1
                else:
                    vn += 1
            elif has_gold:
                nv += 1
        prec = vc / max(1, vc + vw + vn)
        rec = vc / max(1, vc + vw + nv)
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        if f1 > best_f1 + 1e-9:
            best, best_f1 = float(t), f1
    return best


__all__ = ["FEATURES", "CandidateRanker", "Group", "prior_score"]
