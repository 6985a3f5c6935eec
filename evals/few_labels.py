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
    TaxonomyIndex,
    text_of,
)
from retrieval.embedder import Vectors
from taxonomy import Snapshot

STRATEGIES = ("queue", "random")
Progress = Callable[[str], None]


class VectorTable:
    """An :class:`~retrieval.Embedder` over texts encoded beforehand (a miss is an error:
    every text of the simulation is encoded once, up front)."""

    def __init__(self, name: str, texts: Sequence[str], vectors: Vectors) -> None:
        if len(texts) != len(vectors):
            raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
        self._name = name
        self._dim = int(vectors.shape[1])
        self._rows = {t: i for i, t in enumerate(texts)}
        self._vectors = np.ascontiguousarray(vectors, dtype=np.float32)

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str]) -> Vectors:
        try:
            rows = [self._rows[t] for t in texts]
        except KeyError as exc:
            raise KeyError("a text was not encoded beforehand") from exc
        return self._vectors[rows] if rows else np.zeros((0, self._dim), dtype=np.float32)


@dataclass
class Workbench:
    """A labelled pool and an eval set with their vectors, ready for many cheap fits."""

    snapshot: Snapshot
    pool: list[Example]
    pool_products: list[Product]
    eval_items: list[DatasetItem]
    embedder: VectorTable
    taxonomy_index: TaxonomyIndex
    pool_vectors: Vectors
    config: CandidateConfig = field(default_factory=CandidateConfig)

    @classmethod
    def build(
        cls, snapshot: Snapshot, pool_items: Sequence[DatasetItem], eval_items: Sequence[DatasetItem],
        embedder: Embedder, config: CandidateConfig | None = None,
    ) -> Workbench:
        """Encode every pool and eval text once with ``embedder`` (a cached one, ideally)."""
        cfg = config or CandidateConfig()
        eval_ids = {it.id for it in eval_items}
        pool_items = [it for it in pool_items if it.id not in eval_ids and it.gold_tags]  # never see itself
        pool = [it.example(snapshot) for it in pool_items]
        products = [it.product() for it in pool_items]
        texts = list(dict.fromkeys(
            [text_of(p, cfg.max_chars) for p in products]
            + [text_of(it.product(), cfg.max_chars) for it in eval_items]
        ))
        table = VectorTable(embedder.name, texts, embedder.encode(texts))
        # taxonomy node texts go through the real embedder (they are not in the table)
        taxonomy_index = TaxonomyIndex(snapshot, embedder)
        vectors = table.encode([text_of(p, cfg.max_chars) for p in products])
        return cls(snapshot, pool, products, list(eval_items), table, taxonomy_index, vectors, cfg)

    @property
    def pool_leaves(self) -> list[str]:
        return [ex.tags[-1] if ex.tags else "" for ex in self.pool]

    def tagger(self, labelled: Sequence[int], *, pipeline: str = "hybrid",
               llm: LLMBackend | None = None) -> Tagger:
        """The tagger whose examples are the pool items ``labelled`` (indexes into ``pool``)."""
        examples = [self.pool[i] for i in labelled]
        index: ExampleIndex | None = None
        lexical: LexicalClassifier | None = None
        if examples:
            index = ExampleIndex(self.embedder.dim)
            index.upsert(examples, self.pool_vectors[list(labelled)])
            lexical = LexicalClassifier.fit(examples) if pipeline != "knn" else None
        generator = CandidateGenerator(
            self.embedder, self.snapshot, index, config=self.config,
            taxonomy_index=self.taxonomy_index, lexical=lexical,
        )
        config = TaggerConfig(pipeline=pipeline, attributes="off")  # type: ignore[arg-type]
        return Tagger(generator, llm, config=config)

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
    strategy: str, bench: Workbench, labelled: Sequence[int], pool_results: Sequence[TagResult] | None,
    batch: int, rng: random.Random,
) -> list[int]:
    """The next ``batch`` pool indexes to review, from those not yet labelled."""
    taken = set(labelled)
    rest = [i for i in range(len(bench.pool)) if i not in taken]
    if strategy == "random":
        return sorted(rng.sample(rest, min(batch, len(rest))))
    if strategy != "queue":
        raise ValueError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    if pool_results is None or len(pool_results) != len(rest):
        raise ValueError("the queue needs the tagger's results on the unlabelled pool")
    support = Counter(bench.pool_leaves[i] for i in labelled)
    order = order_for_review(signals(pool_results), support, limit=batch)
    return sorted(rest[j] for j in order)


def simulate(
    bench: Workbench, strategy: str, *, initial: int = 1, batch: int = 200, max_labels: int = 5000,
    seed: int = 0, n_boot: int = 1000, progress: Progress | None = None,
) -> list[Round]:
    """Rounds of review: round 0 is the initial labelled set, each further round adds
    ``batch`` reviewed products, until ``max_labels`` (or the pool) is reached."""
    rng = random.Random(f"{strategy}:{seed}")
    labelled = per_category(bench.pool_leaves, initial, seed)
    rounds: list[Round] = []
    while True:
        t0 = time.perf_counter()
        tagger = bench.tagger(labelled)
        taken = set(labelled)
        rest = [i for i in range(len(bench.pool)) if i not in taken]
        more = len(labelled) < max_labels and bool(rest)
        need_pool = more and strategy == "queue"
        products = [it.product() for it in bench.eval_items]
        if need_pool:
            products += [bench.pool_products[i] for i in rest]
        results = tagger.tag_many(products)
        metrics = bench.score(results[: len(bench.eval_items)], n_boot=n_boot, seed=seed)
        rounds.append(Round(len(labelled), metrics, time.perf_counter() - t0))
        if progress is not None:
            progress(f"{strategy} seed {seed}: {len(labelled)} labels → WAF1 {metrics['waf1']:.2f} "
                     f"({rounds[-1].seconds:.0f}s)")
        if not more:
            return rounds
        pool_results = results[len(bench.eval_items):] if need_pool else None
        step = min(batch, max_labels - len(labelled))
        labelled = sorted([*labelled, *choose(strategy, bench, labelled, pool_results, step, rng)])


def labels_to_reach(rounds: Sequence[dict[str, Any]], target: float) -> int | None:
    """The fewest labels at which a curve's WAF1 reaches ``target`` (None: never)."""
    return next((r["labels"] for r in rounds if r["waf1"] >= target), None)
