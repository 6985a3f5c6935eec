"""Learning from fewer labels: learning curves and the active-learning simulation.

Both re-fit the default pipeline (``hybrid``: embedding neighbours + lexical classifier) on a
labelled subset of a pool many times, so everything that does not depend on the labels is
computed once: the product vectors (encoded once, through the embedding cache) and the
taxonomy index. A fit is then only a FAISS index built from cached vectors plus the lexical
classifier trained on the subset; tagging reads the vectors from a table instead of the
embedder. Scores come from :func:`evals.metrics.compute_metrics` (WAF1 with bootstrap CIs),
the same scorer as ``tagsmith eval``.

Active learning (:func:`simulate`): start from ``initial`` labelled examples per category,
then rounds of ``batch`` products chosen from the rest of the pool, either by the review
queue's ordering (:func:`agent.review_priority.order_for_review` over the tagger's results on
the unlabelled pool, ``class_support`` from the labelled set) or at random (seeded); the chosen
products are "reviewed" (their gold label is added) and the tagger is re-fitted; the eval set
is scored after every round.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.svm import LinearSVC

from agent.contract import Product, TagResult
from agent.llm import LLMBackend
from agent.review_priority import ReviewSignal, order_for_review
from agent.tagger import Tagger, TaggerConfig
from evals.dataset import DatasetItem
from evals.metrics import compute_metrics
from retrieval import (
    CandidateConfig,
    CandidateGenerator,
    Embedder,
    Example,
    ExampleIndex,
    LexicalClassifier,
    LexicalConfig,
    ProductLike,
    Retrieval,
    TaxonomyIndex,
    text_of,
)
from retrieval.embedder import Vectors
from retrieval.lexical import _weigh
from taxonomy import Snapshot

STRATEGIES = ("queue", "random")
Progress = Callable[[str], None]


class LexicalCounts:
    """Word 1–2-gram and char_wb 3–5-gram counts of every text, computed once.

    :meth:`fit` trains exactly what :meth:`LexicalClassifier.fit` trains on a subset (the
    same vocabulary: terms of the subset with the configured minimum document frequency and
    the ``char_max_features`` most frequent char n-grams, in the same alphabetical order; the
    same idf and the same SVM) without analysing any text again, and :meth:`margins` scores
    rows as :meth:`LexicalClassifier.decision` would. A round of the simulation then costs an
    SVM fit, not a pass of the analysers over thousands of 1,500-character texts.
    """

    def __init__(self, texts: Sequence[str], config: LexicalConfig | None = None) -> None:
        self.config = config or LexicalConfig()
        word = CountVectorizer(ngram_range=(1, 2), dtype=np.float32)
        char = CountVectorizer(analyzer="char_wb", ngram_range=(3, 5), dtype=np.float32)
        self.word = sp.csr_matrix(word.fit_transform(texts))
        self.char = sp.csr_matrix(char.fit_transform(texts))
        self.word_terms = word.get_feature_names_out()
        self.char_terms = char.get_feature_names_out()

    def fit(self, rows: Sequence[int], labels: Sequence[str]) -> LexicalFit | None:
        """The classifier of texts ``rows`` with ``labels`` (one tag each); None when fewer
        than two tags have ``min_class_examples`` examples (as :meth:`LexicalClassifier.fit`)."""
        cfg = self.config
        counts = Counter(labels)
        kept = [(r, y) for r, y in zip(rows, labels, strict=True) if counts[y] >= cfg.min_class_examples]
        if len({y for _, y in kept}) < 2:
            return None
        train = [r for r, _ in kept]
        n = len(train)
        word_min_df = cfg.word_min_df if n >= 50 * cfg.word_min_df else 1
        char_min_df = cfg.char_min_df if n >= 50 * cfg.char_min_df else 1
        word_cols, word_idf = _vocabulary(self.word[train], word_min_df, None)
        char_cols, char_idf = _vocabulary(self.char[train], char_min_df, cfg.char_max_features)
        fitted = LexicalFit(self, word_cols, char_cols, word_idf, char_idf)
        svm = LinearSVC(C=cfg.c, random_state=0).fit(fitted.features(train), [y for _, y in kept])
        coef = np.asarray(svm.coef_, dtype=np.float32)
        intercept = np.asarray(svm.intercept_, dtype=np.float32)
        classes = [str(c) for c in svm.classes_]
        if len(classes) == 2:
            coef = np.vstack([-coef[0], coef[0]])
            intercept = np.array([-intercept[0], intercept[0]], dtype=np.float32)
        coef[np.abs(coef) < cfg.prune] = 0.0
        fitted.classifier = LexicalClassifier(
            classes,
            {str(self.word_terms[c]): i for i, c in enumerate(word_cols)},
            {str(self.char_terms[c]): i for i, c in enumerate(char_cols)},
            word_idf, char_idf, sp.csr_matrix(coef), intercept, cfg, n,
        )
        fitted.coef_t = sp.csr_matrix(coef.T)
        fitted.intercept = intercept
        return fitted


def _vocabulary(counts: sp.csr_matrix, min_df: int, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Kept columns (ascending) and their smoothed idf, as TfidfVectorizer's fit computes them."""
    n_docs = counts.shape[0]
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    mask = df >= min_df
    if limit is not None and mask.sum() > limit:
        tfs = np.asarray(counts.sum(axis=0)).ravel()
        order = (-tfs[mask]).argsort()[:limit]
        new_mask = np.zeros(len(df), dtype=bool)
        new_mask[np.where(mask)[0][order]] = True
        mask = new_mask
    cols = np.flatnonzero(mask)
    idf = np.asarray(np.log((1.0 + n_docs) / (1.0 + df[cols])) + 1.0, dtype=np.float32)
    return cols, idf


@dataclass
class LexicalFit:
    """One classifier fitted from :class:`LexicalCounts`: the real :class:`LexicalClassifier`
    (``classifier``) and a fast path to its margins for rows of the counted texts."""

    counts: LexicalCounts
    word_cols: np.ndarray
    char_cols: np.ndarray
    word_idf: np.ndarray
    char_idf: np.ndarray
    classifier: LexicalClassifier | None = None
    coef_t: sp.csr_matrix | None = None
    intercept: np.ndarray | None = None

    def features(self, rows: Sequence[int]) -> sp.csr_matrix:
        word = _weigh(self.counts.word[list(rows)][:, self.word_cols], self.word_idf)
        char = _weigh(self.counts.char[list(rows)][:, self.char_cols], self.char_idf)
        return sp.csr_matrix(sp.hstack([word, char]).tocsr())

    def margins(self, rows: Sequence[int]) -> np.ndarray:
        """(len(rows), classes) margins, what ``classifier.decision`` gives for those texts."""
        assert self.coef_t is not None and self.intercept is not None
        if not rows:
            return np.zeros((0, self.coef_t.shape[1]), dtype=np.float32)
        scores = self.features(rows) @ self.coef_t
        dense = scores.toarray() if sp.issparse(scores) else scores
        out: np.ndarray = np.asarray(dense, dtype=np.float32) + self.intercept
        return out


class TableGenerator(CandidateGenerator):
    """A :class:`CandidateGenerator` whose products are rows of a :class:`Workbench`: their
    vectors and lexical margins come from the tables, not from the embedder and analysers
    (same retrieval and ranking, :meth:`CandidateGenerator.retrieve_vectors`)."""

    def __init__(self, bench: Workbench, index: ExampleIndex | None, fit: LexicalFit | None) -> None:
        super().__init__(bench.embedder, bench.snapshot, index, config=bench.config,
                         taxonomy_index=bench.taxonomy_index,
                         lexical=fit.classifier if fit is not None else None)
        self._bench = bench
        self._fit = fit

    def retrieve(self, products: Sequence[ProductLike | str], *, examples: bool = True,
                 lexical: bool = True) -> list[Retrieval]:
        rows = [self._bench.row_of(p) for p in products]
        margins = None
        if lexical and examples and self._fit is not None and rows:
            margins = self._fit.margins(rows)
        return self.retrieve_vectors(self._bench.vectors[rows], margins=margins, examples=examples)


@dataclass
class Workbench:
    """A labelled pool and an eval set with their vectors and token counts, ready for many
    cheap fits. Rows: the pool's items first, then the eval items."""

    snapshot: Snapshot
    pool: list[Example]
    pool_products: list[Product]
    eval_items: list[DatasetItem]
    embedder: Embedder
    taxonomy_index: TaxonomyIndex
    vectors: Vectors
    lexical: LexicalCounts
    config: CandidateConfig = field(default_factory=CandidateConfig)
    rows: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(
        cls, snapshot: Snapshot, pool_items: Sequence[DatasetItem], eval_items: Sequence[DatasetItem],
        embedder: Embedder, config: CandidateConfig | None = None, lexical: LexicalConfig | None = None,
    ) -> Workbench:
        """Encode every pool and eval text once with ``embedder`` (a cached one, ideally)
        and count their n-grams once."""
        cfg = config or CandidateConfig()
        lex_cfg = lexical or LexicalConfig()
        eval_ids = {it.id for it in eval_items}
        pool_items = [it for it in pool_items if it.id not in eval_ids and it.gold_tags]  # never see itself
        pool = [it.example(snapshot) for it in pool_items]
        products = [it.product() for it in pool_items]
        eval_products = [it.product() for it in eval_items]
        everything: list[ProductLike] = [*pool, *eval_products]
        vectors = embedder.encode([text_of(p, cfg.max_chars) for p in everything])
        counts = LexicalCounts([text_of(p, lex_cfg.max_chars) for p in everything], lex_cfg)
        rows = {p.id: i for i, p in enumerate([*products, *eval_products]) if p.id is not None}
        return cls(snapshot, pool, products, list(eval_items), embedder, TaxonomyIndex(snapshot, embedder),
                   vectors, counts, cfg, rows)

    @property
    def pool_leaves(self) -> list[str]:
        return [ex.tags[-1] if ex.tags else "" for ex in self.pool]

    def eval_products(self) -> list[Product]:
        return [it.product() for it in self.eval_items]

    def row_of(self, product: ProductLike | str) -> int:
        key = getattr(product, "id", None)
        if not isinstance(key, str) or key not in self.rows:
            raise KeyError(f"not a product of the workbench: {key!r}")
        return self.rows[key]

    def tagger(self, labelled: Sequence[int], *, pipeline: str = "hybrid",
               llm: LLMBackend | None = None) -> Tagger:
        """The tagger whose examples are the pool items ``labelled`` (indexes into ``pool``);
        no examples: taxonomy search alone (the zero-shot setting)."""
        labelled = list(labelled)
        index: ExampleIndex | None = None
        fit: LexicalFit | None = None
        if labelled:
            index = ExampleIndex(self.embedder.dim)
            index.upsert([self.pool[i] for i in labelled], self.vectors[labelled])
            if pipeline != "knn":
                fit = self.lexical.fit(labelled, [self.pool[i].tags[-1] for i in labelled])
        config = TaggerConfig(pipeline=pipeline, attributes="off")  # type: ignore[arg-type]
        return Tagger(TableGenerator(self, index, fit), llm, config=config)

    def score(self, results: Sequence[TagResult], items: Sequence[DatasetItem] | None = None,
              *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
        """:func:`compute_metrics` of results for ``items`` (default: the eval set)."""
        items = self.eval_items if items is None else items
        return compute_metrics([record(it, r, self.snapshot) for it, r in zip(items, results, strict=True)],
                               self.snapshot, n_boot=n_boot, seed=seed)


def record(item: DatasetItem, result: TagResult, snap: Snapshot) -> dict[str, Any]:
    """The scorer's record of one result (the fields :func:`compute_metrics` reads)."""
    top = result.tags[0].id if result.tags else None
    return {
        "id": item.id, "gold_tags": item.gold_tags,
        "pred_tags": list(snap.path(top)) if top is not None and top in snap else ([top] if top else []),
        "confidence": result.tags[0].confidence if result.tags else None,
        "needs_review": result.needs_review,
    }


def per_category(leaves: Sequence[str], k: int | None, seed: int) -> list[int]:
    """Seeded indexes of ``k`` items per category (all of a category with fewer; all items
    when ``k`` is None), in pool order."""
    if k is None:
        return list(range(len(leaves)))
    by: dict[str, list[int]] = defaultdict(list)
    for i, leaf in enumerate(leaves):
        by[leaf].append(i)
    rng = random.Random(seed)
    chosen: list[int] = []
    for leaf in sorted(by):
        members = by[leaf]
        chosen += members if len(members) <= k else rng.sample(members, k)
    return sorted(chosen)


def summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """The figures a curve keeps of a metrics dict."""
    ci = metrics.get("ci95", {})
    return {"waf1": metrics["waf1"], "waf1_ci95": ci.get("waf1"), "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"], "ece": metrics["ece"], "n": metrics["n"]}


def signals(results: Sequence[TagResult]) -> list[ReviewSignal]:
    return [ReviewSignal.of(r) for r in results]


@dataclass
class Round:
    labels: int
    metrics: dict[str, Any]
    seconds: float

    def as_json(self) -> dict[str, Any]:
        return {"labels": self.labels, **summary(self.metrics), "seconds": round(self.seconds, 2)}


def choose(
    strategy: str, bench: Workbench, labelled: Sequence[int], candidates: Sequence[int],
    results: Sequence[TagResult] | None, batch: int, rng: random.Random,
) -> list[int]:
    """The next ``batch`` pool indexes to review among ``candidates`` (unlabelled pool
    indexes); the queue orders them by the tagger's ``results`` on them."""
    if strategy == "random":
        return sorted(rng.sample(list(candidates), min(batch, len(candidates))))
    if strategy != "queue":
        raise ValueError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    if results is None or len(results) != len(candidates):
        raise ValueError("the queue needs the tagger's results on the candidates")
    support = Counter(bench.pool_leaves[i] for i in labelled)
    order = order_for_review(signals(results), support, limit=batch)
    return sorted(candidates[j] for j in order)


def simulate(
    bench: Workbench, strategy: str, *, initial: int = 1, batch: int = 200, max_labels: int = 5000,
    seed: int = 0, n_boot: int = 1000, scan: int | None = None, progress: Progress | None = None,
    on_round: Callable[[list[Round]], None] | None = None,
) -> list[Round]:
    """Rounds of review: round 0 is the initial labelled set (``initial`` per category),
    each further round adds ``batch`` reviewed products, until ``max_labels`` (or the pool)
    is reached. ``scan``: how many unlabelled products (a seeded random sample) the queue
    tags and orders per round; None: all of them."""
    rng = random.Random(f"{strategy}:{seed}")
    labelled = per_category(bench.pool_leaves, initial, seed)
    rounds: list[Round] = []
    while True:
        t0 = time.perf_counter()
        tagger = bench.tagger(labelled)
        taken = set(labelled)
        rest = [i for i in range(len(bench.pool)) if i not in taken]
        more = len(labelled) < max_labels and bool(rest)
        candidates = rest
        if more and strategy == "queue" and scan is not None and len(rest) > scan:
            candidates = sorted(rng.sample(rest, scan))
        products = bench.eval_products()
        if more and strategy == "queue":
            products += [bench.pool_products[i] for i in candidates]
        results = tagger.tag_many(products)
        n_eval = len(bench.eval_items)
        metrics = bench.score(results[:n_eval], n_boot=n_boot, seed=seed)
        rounds.append(Round(len(labelled), metrics, time.perf_counter() - t0))
        if progress is not None:
            progress(f"{strategy} seed {seed}: {len(labelled)} labels → WAF1 {metrics['waf1']:.2f} "
                     f"({rounds[-1].seconds:.0f}s)")
        if on_round is not None:
            on_round(rounds)
        if not more:
            return rounds
        pool_results = results[n_eval:] if strategy == "queue" else None
        step = min(batch, max_labels - len(labelled))
        labelled = sorted([*labelled, *choose(strategy, bench, labelled, candidates, pool_results, step, rng)])


def labels_to_reach(rounds: Sequence[dict[str, Any]], target: float) -> int | None:
    """The fewest labels at which a curve's WAF1 reaches ``target`` (None: never)."""
    return next((r["labels"] for r in rounds if r["waf1"] >= target), None)
