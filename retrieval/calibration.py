"""Calibration of one index generation, fitted on a cross-fitted held-out part of its pool.

A temperature fitted once on MWPD does not fit another pool: the same scores mean more
with 35 examples per category than with 3 (measured ECE 9.7 on a 1,500-example MWPD
pool). So every publication refits, on the pool it publishes:

1. **Held out**: up to ``max_held_out`` examples whose category keeps at least one other
   example, in folds of at most :data:`MAX_FOLD_SHARE` of the pool (a single fold, a plain
   hold-out, on a pool of 5,000 or more), stratified by category. For each fold the lexical classifier is retrained without the fold, and
   the fold's items are ranked against the index with every fold item excluded from the
   neighbours: each held-out answer is what the tagger would have said had it never seen
   the item. The TF-IDF vocabulary of the fold classifiers is learnt without the fold too
   (it is :meth:`LexicalClassifier.fit`); only the embeddings are shared. Optionally
   (``duplicate_similarity``, off by default) the fold items' near-duplicates (embedding
   cosine at least that, or the same normalised title) are left out with them, so that a
   held-out listing variant does not find its twin; measured on MWPD (docs/benchmarks.md)
   it did not pay: 10 examples per category 90.8 -> 93.5 % unflagged dev accuracy, still
   below 95 %, and the full pool 95.2 -> 94.8 %.
2. **Temperatures** (one with the lexical margins, ``hybrid``; one without, ``knn``) by
   minimising the negative log-likelihood of the reported answer being right (the top
   probability, renormalised over the ``max_candidates`` the tagger weighs); then a Platt
   map of that top probability, ``sigmoid(a * logit(p) + b)``, fitted by the same
   likelihood: a temperature alone cannot bend the curve (measured on MWPD: held-out ECE
   8.7 with the fitted temperature on 30 examples per category). The map is monotone, so
   it changes the confidences, never which answers a threshold keeps.
3. **Review threshold**: the lowest confidence at which the held-out answers at or above
   it are at least ``target_precision`` right, by a lower confidence bound of their share
   that holds for every threshold scanned at once (:func:`threshold_for`,
   :data:`CONFIDENCE_ALPHA`): the threshold is picked from hundreds of candidates, and a
   bound checked one candidate at a time (the rule before, one-sided 90 % Wilson) lets a
   small all-right top of the curve pass by luck: on MWPD with 10 examples per category the
   71 held-out answers above the threshold it fitted were 98.6 % right, dev's 90.8 %.
   The held-out (confidence, right) pairs are stored, so a loader asked for another target
   picks its threshold from the same curve.
4. **Far from the examples**: the ``far_percentile`` of the held-out products' similarity
   to their nearest example; a product less similar than that to every example is flagged.

A pool where most categories have a single example cannot be held out from (taking out
the example takes out the category): the calibration then keeps the defaults and says why
(``method == "default"``, ``note``).
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from statistics import NormalDist
from typing import Any

import numpy as np

from retrieval.candidates import CandidateConfig, CandidateGenerator, Retrieval
from retrieval.embedder import Embedder
from retrieval.examples import Example
from retrieval.index import ExampleIndex
from retrieval.lexical import LexicalClassifier, LexicalConfig
from retrieval.taxonomy_search import TaxonomyIndex
from taxonomy import Snapshot

#: the review threshold when nothing was fitted (the value tagsmith used before calibration)
DEFAULT_REVIEW_THRESHOLD = 0.5
DEFAULT_TARGET_PRECISION = 0.95
#: the tagger weighs this many top candidates (agent.tagger.TaggerConfig.max_candidates)
MAX_CANDIDATES = 8
MAX_HELD_OUT = 1000
#: at most this share of the pool is left out of one fold's index and classifier. The folds'
#: classifier trainings cost about as much as one training on max_held_out / MAX_FOLD_SHARE
#: examples, whatever the pool's size (a pool of 5,000 or more: a single fold)
MAX_FOLD_SHARE = 0.2
MAX_FOLDS = 10
#: the threshold is the lowest whose precision's lower confidence bound reaches the target,
#: the bound holding at this level for all the thresholds scanned together (see
#: :func:`threshold_for`): a threshold fitted on a few hundred held-out answers must not
#: reach 95 % by luck
CONFIDENCE_ALPHA = 0.1
#: the one-sided 90 % Wilson z of a single threshold (the rule before :data:`CONFIDENCE_ALPHA`
#: was spent over the thresholds; the benchmark still shows it)
CONFIDENCE_Z = 1.2816
MIN_HELD_OUT = 30
FAR_PERCENTILE = 2.0
ECE_BINS = 10
#: the benchmark's default near-duplicate cosine for ``fit_calibration(duplicate_similarity=...)``
#: (publications do not exclude near-duplicates: see the module docstring)
DUPLICATE_SIMILARITY = 0.9


def ece(
    confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS, weights: np.ndarray | None = None,
) -> float:
    """Expected calibration error in percent (equal-width bins); ``weights`` per item (e.g.
    bootstrap counts; default 1). The one implementation: the evals' metrics use it too."""
    w = np.ones(len(confidence)) if weights is None else weights
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    conf_sum = np.bincount(which, weights=w * confidence, minlength=bins)
    acc_sum = np.bincount(which, weights=w * correct, minlength=bins)
    n = float(w.sum())
    return float(100.0 * np.abs(conf_sum - acc_sum).sum() / n) if n > 0 else 0.0


def top_confidence(scores: np.ndarray, temperature: float) -> float:
    """softmax(scores / temperature)[0] over the (best-first) candidate scores."""
    logits = scores / max(temperature, 1e-6)
    weights = np.exp(logits - logits.max())
    return float(weights[0] / weights.sum())


def wilson_lower(right: int, n: int, z: float = CONFIDENCE_Z) -> float:
    """One-sided Wilson lower confidence bound of a proportion ``right / n``."""
    if n == 0:
        return 0.0
    p = right / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    out: np.ndarray = np.log(q) - np.log1p(-q)
    return out


def platt(probability: float, a: float, b: float) -> float:
    """``sigmoid(a * logit(p) + b)``; (1, 0) is the identity."""
    if a == 1.0 and b == 0.0:
        return probability
    z = a * float(_logit(np.array([probability]))[0]) + b
    return float(1.0 / (1.0 + math.exp(-z))) if z > -700 else 0.0


def fit_platt(confidence: np.ndarray, right: np.ndarray) -> tuple[float, float]:
    """(a, b) minimising the log loss of ``sigmoid(a * logit(confidence) + b)`` (a > 0)."""
    from scipy.optimize import minimize

    x = _logit(np.asarray(confidence, dtype=float))
    y = np.asarray(right, dtype=float)
    if len(x) < 2 or y.min() == y.max():
        return (1.0, 0.0)

    def loss(params: np.ndarray) -> float:
        z = params[0] * x + params[1]
        # log(1 + e^z) - y z, stably
        return float(np.mean(np.logaddexp(0.0, z) - y * z))

    found = minimize(loss, np.array([1.0, 0.0]), method="L-BFGS-B", bounds=[(0.05, 20.0), (-20.0, 20.0)])
    return (round(float(found.x[0]), 4), round(float(found.x[1]), 4))


def spent_z(kept: int, total: int, alpha: float = CONFIDENCE_ALPHA) -> float:
    """The Wilson z for a threshold that keeps ``kept`` of ``total`` held-out answers: the
    error level ``alpha`` is spent over dyadic shells of the kept count, ``alpha / 2**j`` on
    the shell ``total / 2**j < kept <= total / 2**(j-1)`` (j = 1, 2, ...; the shares sum to
    ``alpha``). A threshold keeping most answers is checked at about the level of a single
    one (j = 1: z = 1.64 for alpha = 0.1), one keeping a few dozen of a thousand much more
    strictly (j = 5: z = 2.73): a short lucky run of right answers at the top of the curve
    is what a scan over many thresholds finds. Weighted Bonferroni over the shells, as in
    "stitched" uniform bounds; within a shell the bound is applied to each threshold, an
    approximation (the unit test measures the level it keeps). Generations published
    before keep their stored threshold until their next publication or refit."""
    j = max(1, math.ceil(math.log2(total / kept))) if 0 < kept < total else 1
    return NormalDist().inv_cdf(1.0 - alpha / 2**j)


def threshold_for(
    curve: Sequence[tuple[float, bool]], target: float, z: float | None = None, alpha: float = CONFIDENCE_ALPHA,
) -> float | None:
    """The lowest confidence t such that the answers with confidence >= t are at least
    ``target`` right by the lower Wilson bound of their precision at :func:`spent_z` (the
    bound holds for all the scanned thresholds together at about level ``alpha``); a fixed
    ``z`` instead applies that one z to every threshold (``z=0``: the plain share). None
    when no threshold reaches it (then every answer is reviewed)."""
    if not curve:
        return None
    ordered = sorted(curve, key=lambda p: -p[0])
    right = 0
    best: float | None = None
    total = len(ordered)
    for n, (conf, ok) in enumerate(ordered, 1):
        right += bool(ok)
        # only at the last of equal confidences: a threshold keeps all of them or none
        if n < total and ordered[n][0] >= conf:
            continue
        level = spent_z(n, total, alpha) if z is None else z
        if wilson_lower(right, n, level) >= target:
            best = conf
    return best


@dataclass(frozen=True)
class Calibration:
    """What a generation was calibrated to; stored in its manifest (``extra.calibration``)."""

    method: str  # "cross-fitted" or "default"
    temperature: float  # with the lexical margins (hybrid, rag's candidates)
    knn_temperature: float  # neighbours + taxonomy only
    target_precision: float
    review_threshold: float  # for target_precision (hybrid)
    knn_review_threshold: float
    far_similarity: float | None = None  # nearest example below this: far_from_examples
    ece: float | None = None  # held-out ECE (percent) at the fitted temperature, hybrid
    knn_ece: float | None = None
    ece_before: float | None = None  # held-out ECE at the default temperature (hybrid)
    held_out: int = 0
    folds: int = 0
    examples: int = 0
    precision: float | None = None  # held-out precision of answers >= review_threshold
    review_rate: float | None = None  # held-out share below review_threshold
    platt: tuple[float, float] = (1.0, 0.0)  # (a, b) of the top-confidence map, hybrid
    knn_platt: tuple[float, float] = (1.0, 0.0)
    note: str = ""
    refit_pending: bool = False  # carried over from the previous generation until a refit
    curve: tuple[tuple[float, bool], ...] = field(default=(), repr=False)
    knn_curve: tuple[tuple[float, bool], ...] = field(default=(), repr=False)

    @property
    def fitted(self) -> bool:
        return self.method == "cross-fitted"

    def confidence(self, probability: float, *, lexical: bool = True) -> float:
        """The calibrated confidence of a top answer whose (temperature-scaled, renormalised)
        probability is ``probability``."""
        a, b = self.platt if lexical else self.knn_platt
        return platt(probability, a, b)

    def threshold(self, target: float | None = None, *, lexical: bool = True) -> float:
        """The review threshold for ``target`` (default: the one fitted for); above every
        held-out confidence (1.0) when no threshold reaches the target."""
        if not self.fitted:
            return self.review_threshold if lexical else self.knn_review_threshold
        if target is None or target == self.target_precision:
            return self.review_threshold if lexical else self.knn_review_threshold
        found = threshold_for(self.curve if lexical else self.knn_curve, target)
        return 1.0 if found is None else found

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["curve"] = [[c, int(ok)] for c, ok in self.curve]
        out["knn_curve"] = [[c, int(ok)] for c, ok in self.knn_curve]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("curve", "knn_curve"):
            values[key] = tuple((float(c), bool(ok)) for c, ok in values.get(key, ()))
        for key in ("platt", "knn_platt"):
            if key in values:
                a, b = values[key]
                values[key] = (float(a), float(b))
        return cls(**values)

    def summary(self) -> dict[str, Any]:
        """The figures `index stats` and `/readyz` show (no curves)."""
        return {k: v for k, v in asdict(self).items() if k not in {"curve", "knn_curve"}}


def default_calibration(
    config: CandidateConfig | None = None,
    *,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    note: str = "",
    examples: int = 0,
) -> Calibration:
    cfg = config or CandidateConfig()
    return Calibration(
        method="default", temperature=cfg.temperature, knn_temperature=cfg.knn_temperature,
        target_precision=target_precision, review_threshold=DEFAULT_REVIEW_THRESHOLD,
        knn_review_threshold=DEFAULT_REVIEW_THRESHOLD, examples=examples, note=note,
    )


def calibration_of(extra: Mapping[str, Any]) -> Calibration | None:
    """The calibration stored in a manifest's ``extra`` (None: published before calibration
    existed, or unreadable, which a loader treats the same: defaults)."""
    data = extra.get("calibration")
    if not isinstance(data, Mapping):
        return None
    try:
        return Calibration.from_dict(data)
    except (TypeError, ValueError):
        return None


@dataclass
class HeldOut:
    """Per held-out item: the candidate scores (best first), whether each is right, the
    nearest example's similarity, how many neighbours back the winner."""

    scores: list[np.ndarray] = field(default_factory=list)
    right: list[np.ndarray] = field(default_factory=list)
    knn_scores: list[np.ndarray] = field(default_factory=list)
    knn_right: list[np.ndarray] = field(default_factory=list)
    nearest: list[float] = field(default_factory=list)


def _fit_temperature(scores: Sequence[np.ndarray], right: Sequence[np.ndarray]) -> float:
    """argmin over T of the log loss of "the top answer is right" at confidence
    softmax(scores / T)[0]: a golden-section search on log T in [0.01, 20]."""
    tops = np.array([bool(r[0]) if len(r) else False for r in right], dtype=float)

    def loss(log_t: float) -> float:
        t = math.exp(log_t)
        conf = np.array([top_confidence(s, t) for s in scores])
        conf = np.clip(conf, 1e-6, 1 - 1e-6)
        return float(-np.mean(tops * np.log(conf) + (1 - tops) * np.log(1 - conf)))

    lo, hi = math.log(0.01), math.log(20.0)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(40):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    return round(math.exp((lo + hi) / 2), 4)


def _folds(items: list[tuple[Example, str]], k: int, rng: random.Random) -> list[list[Example]]:
    """Stratified: each category's items dealt round-robin from a random fold onwards."""
    by_tag: dict[str, list[Example]] = defaultdict(list)
    for example, tag in items:
        by_tag[tag].append(example)
    folds: list[list[Example]] = [[] for _ in range(k)]
    start = 0
    for tag in sorted(by_tag):
        group = by_tag[tag]
        rng.shuffle(group)
        for i, example in enumerate(group):
            folds[(start + i) % k].append(example)
        start = (start + len(group)) % k
    return [f for f in folds if f]


def _title_key(title: str) -> str:
    return " ".join("".join(ch if ch.isalnum() else " " for ch in title.casefold()).split())


def near_duplicates(
    index: ExampleIndex, items: Sequence[Example], examples: Sequence[Example], similarity: float
) -> list[set[str]]:
    """Per item, the ids of ``examples`` (itself excluded) whose vector's cosine with the
    item's is at least ``similarity`` or whose normalised title is the item's."""
    by_title: dict[str, set[str]] = defaultdict(set)
    for ex in examples:
        by_title[_title_key(ex.title)].add(ex.id)
    ids = [ex.id for ex in examples]
    matrix = np.stack([index.vector(i) for i in ids]).astype(np.float32)
    out: list[set[str]] = []
    for start in range(0, len(items), 256):
        chunk = items[start : start + 256]
        sims = np.stack([index.vector(ex.id) for ex in chunk]).astype(np.float32) @ matrix.T
        for row, ex in zip(sims, chunk, strict=True):
            found = {ids[j] for j in np.flatnonzero(row >= similarity)}
            key = _title_key(ex.title)
            if key:
                found |= by_title[key]
            found.discard(ex.id)
            out.append(found)
    return out


def _scores(retrieval: Retrieval, snapshot: Snapshot, max_candidates: int) -> np.ndarray:
    return np.array(
        [c.score for c in retrieval.candidates if snapshot.is_active(c.id)][:max_candidates], dtype=float
    )


def _right(retrieval: Retrieval, snapshot: Snapshot, max_candidates: int, gold: set[str]) -> np.ndarray:
    return np.array(
        [c.id in gold for c in retrieval.candidates if snapshot.is_active(c.id)][:max_candidates], dtype=bool
    )


def fit_calibration(
    embedder: Embedder,
    snapshot: Snapshot,
    index: ExampleIndex,
    *,
    config: CandidateConfig | None = None,
    lexical_config: LexicalConfig | None = None,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    max_held_out: int = MAX_HELD_OUT,
    max_candidates: int = MAX_CANDIDATES,
    far_percentile: float = FAR_PERCENTILE,
    taxonomy_index: TaxonomyIndex | None = None,
    seed: int = 0,
    duplicate_similarity: float | None = None,
) -> Calibration:
    """Fit the calibration of ``index`` (see the module docstring). Cost: one lexical
    classifier per fold (2 folds on a 10,000-example pool) plus ranking the held-out
    items twice; the index's stored vectors are used, nothing is embedded."""
    cfg = config or CandidateConfig()
    lex_cfg = lexical_config or LexicalConfig()
    examples = list(index)
    gold_of: dict[str, tuple[str, ...]] = {}
    for ex in examples:
        tags = tuple(dict.fromkeys(t for t in map(snapshot.resolve, ex.tags) if t is not None))
        if tags:
            gold_of[ex.id] = tags
    counts = Counter(tags[0] for tags in gold_of.values())
    n = len(examples)
    if not counts:
        return default_calibration(cfg, target_precision=target_precision, examples=n,
                                   note="no example carries an active tag: defaults kept")
    multi = sum(1 for c in counts.values() if c >= 2)
    if multi < len(counts) / 2:
        return default_calibration(
            cfg, target_precision=target_precision, examples=n,
            note=f"{len(counts) - multi} of {len(counts)} categories have a single example: "
            "nothing can be held out, defaults kept (add examples, then republish)",
        )
    eligible = [(ex, gold_of[ex.id][0]) for ex in examples if ex.id in gold_of and counts[gold_of[ex.id][0]] >= 2]
    rng = random.Random(seed)
    rng.shuffle(eligible)
    # a category gives at most all but one of its examples to the held-out sample
    taken: Counter[str] = Counter()
    sample: list[tuple[Example, str]] = []
    for ex, tag in eligible:
        if len(sample) >= max_held_out:
            break
        if taken[tag] < counts[tag] - 1:
            taken[tag] += 1
            sample.append((ex, tag))
    if len(sample) < MIN_HELD_OUT:
        return default_calibration(
            cfg, target_precision=target_precision, examples=n,
            note=f"only {len(sample)} examples can be held out (< {MIN_HELD_OUT}): defaults kept",
        )
    k = min(MAX_FOLDS, max(1, math.ceil(len(sample) / max(1.0, MAX_FOLD_SHARE * n))))
    # at most counts-1 of a category are sampled, so every category keeps an example in
    # every fold's training part
    folds = _folds(sample, k, rng)
    # the production classifier's classes: cross-fitting must not drop a class because
    # the fold took one of its few examples
    lexical_classes = {t for t, c in Counter(t for ex in examples for t in ex.tags).items()
                       if c >= lex_cfg.min_class_examples}
    taxonomy_index = taxonomy_index or TaxonomyIndex(snapshot, embedder, snapshot.active_leaf_ids)
    held = HeldOut()
    for fold in folds:
        fold_ids = {ex.id for ex in fold}
        if duplicate_similarity is not None:
            for twins in near_duplicates(index, fold, examples, duplicate_similarity):
                fold_ids |= twins
        train = [ex for ex in examples if ex.id not in fold_ids]
        lexical = LexicalClassifier.fit(train, lex_cfg, classes=lexical_classes)
        generator = CandidateGenerator(
            embedder, snapshot, index, config=replace(cfg, limit=max(cfg.limit, max_candidates)),
            taxonomy_index=taxonomy_index, lexical=lexical,
        )
        vectors = np.stack([index.vector(ex.id) for ex in fold]).astype(np.float32)
        exclude = [fold_ids] * len(fold)
        margins = lexical.decision(fold) if lexical is not None else None
        hybrid = generator.retrieve_vectors(vectors, margins=margins, exclude=exclude)
        knn = generator.retrieve_vectors(vectors, exclude=exclude) if lexical is not None else hybrid
        for ex, h, r in zip(fold, hybrid, knn, strict=True):
            gold = set(gold_of[ex.id])
            held.scores.append(_scores(h, snapshot, max_candidates))
            held.right.append(_right(h, snapshot, max_candidates, gold))
            held.knn_scores.append(_scores(r, snapshot, max_candidates))
            held.knn_right.append(_right(r, snapshot, max_candidates, gold))
            held.nearest.append(max((nb.score for nb in h.neighbours), default=0.0))
    return _summarise(held, cfg, target_precision, far_percentile, n, len(folds))


def _floor(confidence: float) -> float:
    """Rounded down to 5 decimals: a threshold is never above the confidences it admits."""
    return math.floor(float(confidence) * 1e5) / 1e5


def _summarise(
    held: HeldOut, cfg: CandidateConfig, target: float, far_percentile: float, n: int, folds: int
) -> Calibration:
    keep = [i for i, s in enumerate(held.scores) if len(s)]
    scores = [held.scores[i] for i in keep]
    right = [held.right[i] for i in keep]
    knn_scores = [held.knn_scores[i] for i in keep if len(held.knn_scores[i])]
    knn_right = [held.knn_right[i] for i in keep if len(held.knn_scores[i])]
    t = _fit_temperature(scores, right)
    t_knn = _fit_temperature(knn_scores, knn_right)
    ok = np.array([bool(r[0]) for r in right], dtype=float)
    scaled = np.array([top_confidence(s, t) for s in scores])
    a_b = fit_platt(scaled, ok)
    conf = np.array([platt(p, *a_b) for p in scaled])
    conf_before = np.array([top_confidence(s, cfg.temperature) for s in scores])
    knn_ok = np.array([bool(r[0]) for r in knn_right], dtype=float)
    knn_scaled = np.array([top_confidence(s, t_knn) for s in knn_scores])
    knn_a_b = fit_platt(knn_scaled, knn_ok)
    knn_conf = np.array([platt(p, *knn_a_b) for p in knn_scaled])
    curve = tuple((_floor(c), bool(o)) for c, o in zip(conf, ok, strict=True))
    knn_curve = tuple((_floor(c), bool(o)) for c, o in zip(knn_conf, knn_ok, strict=True))
    threshold = threshold_for(curve, target)
    knn_threshold = threshold_for(knn_curve, target)
    review = 1.0 if threshold is None else threshold
    above = conf >= review
    return Calibration(
        method="cross-fitted", temperature=t, knn_temperature=t_knn, target_precision=target,
        review_threshold=review, knn_review_threshold=1.0 if knn_threshold is None else knn_threshold,
        far_similarity=round(float(np.percentile(held.nearest, far_percentile)), 5) if held.nearest else None,
        ece=round(ece(conf, ok), 3), knn_ece=round(ece(knn_conf, knn_ok), 3),
        ece_before=round(ece(conf_before, ok), 3), held_out=len(scores), folds=folds, examples=n,
        platt=a_b, knn_platt=knn_a_b,
        precision=round(float(ok[above].mean()), 4) if above.any() else None,
        review_rate=round(float(1.0 - above.mean()), 4),
        note="" if threshold is not None else f"no confidence threshold reaches {target:.0%} precision: everything is reviewed",
        curve=curve, knn_curve=knn_curve,
    )


def describe(calibration: Calibration) -> str:
    """One line for people: what was fitted, on what, and how well."""
    if not calibration.fitted:
        return (f"defaults (temperature {calibration.temperature}, review threshold "
                f"{calibration.review_threshold}): {calibration.note}")
    pending = " (carried over, refit pending)" if calibration.refit_pending else ""
    return (
        f"cross-fitted on {calibration.held_out:,} held-out examples in {calibration.folds} folds{pending}: "
        f"temperature {calibration.temperature} (knn {calibration.knn_temperature}), ECE "
        f"{calibration.ece} (at the default temperature {calibration.ece_before}), review threshold "
        f"{calibration.review_threshold:.3f} for {calibration.target_precision:.0%} precision "
        f"(held-out review rate {100 * (calibration.review_rate or 0):.1f}%), far from examples below "
        f"similarity {calibration.far_similarity}" + (f"; {calibration.note}" if calibration.note else "")
    )
