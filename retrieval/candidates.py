"""Taxonomy-aware candidate tags for products: neighbour votes + taxonomy search, batched.

For each product:

1. its ``neighbours`` nearest examples vote for their tags with weight ``similarity^power``
   (a high power lets a few very close examples outvote many loose ones), plus
   ``broad_weight`` times a flatter vote (``similarity^broad_power``) that orders the
   runners-up by how many neighbours support them; tags deprecated in
   the snapshot are remapped through ``Snapshot.resolve`` and unknown ones dropped, so old
   examples keep voting for the tag that replaced theirs;
2. every vote is rolled up the hierarchy (an example tagged ``T-Shirts`` also votes for
   ``Shirts & Tops``), and a leaf earns ``rollup`` times its parent's share, so among
   candidates the ones in a well-supported branch rank higher;
3. the taxonomy nodes themselves are searched by cosine; the best ``taxonomy_k`` join the
   pool, and every candidate's score adds ``taxonomy_weight * cosine`` (this is the only
   signal with an empty example pool, and the tie-breaker between sparse votes);
4. when a :class:`~retrieval.lexical.LexicalClassifier` was trained on the examples, its
   best ``lexical_k`` classes join the pool and every candidate adds ``lexical_weight``
   times its SVM margin (classes it never saw get the row's lowest margin).

When even the nearest example is far (cosine below ``near_similarity``, down to
``far_similarity``), the neighbours' votes are scaled down and the taxonomy search weighs
more: with a sparse example pool (a new catalog, the shipped examples) the closest example
of an unrelated kind must not outvote the taxonomy node that names the product.

``score = c * (vote + rollup * parent_vote) + (taxonomy_weight + (1 - c) *
taxonomy_fallback_weight) * cosine + lexical_weight * margin`` with ``c`` that closeness;
only allowed ids (the active leaves by default) are returned, best first, with the
provenance of each and ``probability = softmax(score / temperature)`` over the returned
candidates (``temperature`` calibrated on held-out examples, see docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from retrieval.embedder import Embedder, Vectors
from retrieval.examples import Example
from retrieval.index import ExampleIndex
from retrieval.lexical import LexicalClassifier
from retrieval.taxonomy_search import TaxonomyIndex
from retrieval.text import DEFAULT_MAX_CHARS, ProductLike, text_of
from taxonomy import Snapshot

if TYPE_CHECKING:
    from retrieval.calibration import Calibration


@dataclass(frozen=True, slots=True)
class CandidateConfig:
    """Defaults tuned on MWPD (``python -m evals.benchmarks.retrieval_mwpd``)."""

    neighbours: int = 50
    power: float = 16.0
    broad_power: float = 2.0
    broad_weight: float = 0.5
    rollup: float = 0.05
    taxonomy_weight: float = 0.3
    taxonomy_k: int = 10
    near_similarity: float = 0.45  # nearest example at least this close: votes count fully
    far_similarity: float = 0.25  # nearest example this far or further: votes count nothing
    taxonomy_fallback_weight: float = 1.0
    lexical_weight: float = 3.0
    lexical_k: int = 5
    temperature: float = 0.85  # ECE 4.3 on held-out pool items (calibrate_mwpd)
    knn_temperature: float = 0.33  # the same without the lexical margins (scores span less)
    limit: int = 20
    max_chars: int = DEFAULT_MAX_CHARS


@dataclass(frozen=True, slots=True)
class Candidate:
    id: str
    score: float
    vote: float  # share of the neighbours' (weighted) votes for this node, 0..1
    similarity: float  # cosine between the product and the node's text
    sources: tuple[str, ...]  # provenance: "example:<id>" voters, "taxonomy", "lexical"
    margin: float = 0.0  # the lexical classifier's SVM margin (0 without one)
    probability: float = 0.0  # softmax(score / temperature) over the returned candidates


@dataclass(frozen=True, slots=True)
class Neighbour:
    example: Example
    score: float
    tags: tuple[str, ...]  # the example's tags as active ids of this snapshot


@dataclass(frozen=True, slots=True)
class Retrieval:
    neighbours: tuple[Neighbour, ...]
    candidates: tuple[Candidate, ...]
    unreadable: float = 0.0  # share of the text the embedder cannot read (Embedder.unreadable)


class CandidateGenerator:
    """Neighbours and ranked candidate tags for batches of products against one snapshot.

    ``index`` may be None or empty: candidates then come from taxonomy search alone.
    ``allowed`` restricts the returned ids (default: the snapshot's active leaves); ids not
    active in the snapshot are refused. ``calibration``: the index generation's fitted
    calibration (:mod:`retrieval.calibration`), whose temperatures replace the config's.
    """

    def __init__(
        self,
        embedder: Embedder,
        snapshot: Snapshot,
        index: ExampleIndex | None = None,
        *,
        config: CandidateConfig | None = None,
        allowed: Collection[str] | None = None,
        taxonomy_index: TaxonomyIndex | None = None,
        lexical: LexicalClassifier | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        if index is not None and index.dim != embedder.dim:
            raise ValueError(f"index dimension {index.dim} != embedder dimension {embedder.dim}")
        self.embedder = embedder
        self.snapshot = snapshot
        self.index = index
        self.config = config or CandidateConfig()
        self.calibration = calibration
        if calibration is not None and calibration.fitted:
            self.config = replace(
                self.config, temperature=calibration.temperature, knn_temperature=calibration.knn_temperature
            )
        allowed_ids = snapshot.active_leaf_ids if allowed is None else frozenset(allowed)
        inactive = sorted(a for a in allowed_ids if a not in snapshot.active_ids)
        if inactive:
            raise ValueError(f"allowed ids not active in the taxonomy: {inactive[:5]}")
        self.allowed = allowed_ids
        if taxonomy_index is None or set(taxonomy_index.ids) != set(allowed_ids):
            taxonomy_index = TaxonomyIndex(snapshot, embedder, allowed_ids)
        self.taxonomy_index = taxonomy_index
        self._resolved: dict[str, tuple[str, ...]] = {}
        self.lexical = lexical
        # lexical class -> allowed active id (classes deprecated since training are remapped)
        self._lexical_ids: list[str | None] = []
        if lexical is not None:
            for cls in lexical.classes:
                active = snapshot.resolve(cls)
                self._lexical_ids.append(active if active in allowed_ids else None)

    def with_snapshot(self, snapshot: Snapshot) -> CandidateGenerator:
        """The same examples and classifier against another taxonomy version."""
        return CandidateGenerator(
            self.embedder, snapshot, self.index, config=self.config, lexical=self.lexical,
            calibration=self.calibration,
        )

    def retrieve(
        self,
        products: Sequence[ProductLike | str],
        *,
        examples: bool = True,
        lexical: bool = True,
    ) -> list[Retrieval]:
        """Batched: one embedding call, one index search and one classifier pass for all
        products. ``examples=False`` skips the neighbours (taxonomy search only, the
        zero-shot setting); ``lexical=False`` skips the lexical classifier."""
        texts = [text_of(p, self.config.max_chars) for p in products]
        margins = None
        if lexical and examples and self.lexical is not None and products:
            margins = self.lexical.decision(products)
        out = self.retrieve_vectors(self.embedder.encode(texts), margins=margins, examples=examples)
        shares = self.embedder.unreadable(texts) if texts else []
        return [replace(r, unreadable=float(share)) for r, share in zip(out, shares, strict=True)]

    def retrieve_vectors(
        self,
        queries: Vectors,
        *,
        margins: Vectors | None = None,
        examples: bool = True,
        exclude: Sequence[Collection[str]] | None = None,
    ) -> list[Retrieval]:
        """``exclude``: per query, example ids that must not be neighbours (leave-one-out
        retrieval for building fine-tuning prompts: an example never sees itself or its
        exact duplicates); the search reaches further so that ``neighbours`` remain."""
        cfg = self.config
        if len(queries) == 0:
            return []
        if exclude is not None and len(exclude) != len(queries):
            raise ValueError(f"exclude has {len(exclude)} rows for {len(queries)} queries")
        if examples and self.index is not None and len(self.index) and cfg.neighbours > 0:
            extra = max((len(e) for e in exclude), default=0) if exclude is not None else 0
            hits = self.index.search(queries, cfg.neighbours + extra)
            if exclude is not None:
                hits = [
                    [h for h in row if h.example.id not in banned][: cfg.neighbours]
                    for row, banned in zip(hits, exclude, strict=True)
                ]
        else:
            hits = [[] for _ in range(len(queries))]
        sims = self.taxonomy_index.similarities(queries) if len(self.taxonomy_index) else None
        out = []
        for row, row_hits in enumerate(hits):
            neighbours = []
            for hit in row_hits:
                tags = self._resolve_tags(hit.example.tags)
                if tags:  # an example none of whose tags survive can only mislead
                    neighbours.append(Neighbour(hit.example, hit.score, tags))
            ranked = self._rank(
                neighbours,
                None if sims is None else sims[row],
                None if margins is None else margins[row],
            )
            out.append(Retrieval(tuple(neighbours), ranked))
        return out

    def _lexical_margins(self, row: Vectors) -> tuple[dict[str, float], set[str], float]:
        """Margins per allowed id, the ids of the best ``lexical_k`` classes, the floor."""
        margins: dict[str, float] = {}
        for position, active in enumerate(self._lexical_ids):
            if active is not None:
                value = float(row[position])
                if value > margins.get(active, -np.inf):
                    margins[active] = value
        top = sorted(margins, key=lambda k: -margins[k])[: self.config.lexical_k]
        # a class the classifier never saw gets -1, the margin an SVM aims at for "not me"
        return margins, set(top), -1.0

    def _resolve_tags(self, tags: Sequence[str]) -> tuple[str, ...]:
        key = "\x00".join(tags)
        cached = self._resolved.get(key)
        if cached is None:
            resolved: dict[str, None] = {}
            for tag in tags:
                active = self.snapshot.resolve(tag)
                if active is not None:
                    resolved[active] = None
            cached = self._resolved[key] = tuple(resolved)
        return cached

    def _rank(
        self, neighbours: Sequence[Neighbour], sims: Vectors | None, lexical_row: Vectors | None
    ) -> tuple[Candidate, ...]:
        cfg, snap = self.config, self.snapshot
        votes: dict[str, float] = {}
        broad: dict[str, float] = {}
        voters: dict[str, list[str]] = {}
        total = broad_total = 0.0
        for nb in neighbours:
            similarity = max(nb.score, 0.0)
            weight, broad_weight = similarity**cfg.power, similarity**cfg.broad_power
            total += weight
            broad_total += broad_weight
            closure = {a for tag in nb.tags for a in snap.path(tag)}
            for node_id in closure:
                votes[node_id] = votes.get(node_id, 0.0) + weight
                broad[node_id] = broad.get(node_id, 0.0) + broad_weight
            for tag in nb.tags:
                voters.setdefault(tag, []).append(f"example:{nb.example.id}")
        if total > 0:
            votes = {k: v / total for k, v in votes.items()}
        if broad_total > 0 and cfg.broad_weight > 0:
            # a second, flatter kernel: the sharp vote decides the top, the broad one orders
            # the runners-up (whose sharp votes are all ~0) by how many neighbours back them
            votes = {k: v + cfg.broad_weight * broad[k] / broad_total for k, v in votes.items()}

        pool = {node_id for node_id in votes if node_id in self.allowed}
        from_taxonomy: set[str] = set()
        if sims is not None and cfg.taxonomy_k > 0:
            k = min(cfg.taxonomy_k, len(sims))
            top = np.argpartition(-sims, k - 1)[:k]
            from_taxonomy = {self.taxonomy_index.ids[i] for i in top}
            pool |= from_taxonomy
        margins: dict[str, float] = {}
        from_lexical: set[str] = set()
        floor = 0.0
        if lexical_row is not None and cfg.lexical_weight > 0:
            margins, from_lexical, floor = self._lexical_margins(lexical_row)
            pool |= from_lexical

        nearest = max((nb.score for nb in neighbours), default=0.0)
        span = max(cfg.near_similarity - cfg.far_similarity, 1e-6)
        closeness = min(max((nearest - cfg.far_similarity) / span, 0.0), 1.0)
        taxonomy_weight = cfg.taxonomy_weight + (1.0 - closeness) * cfg.taxonomy_fallback_weight
        candidates = []
        for node_id in pool:
            similarity = float(sims[self.taxonomy_index.position[node_id]]) if sims is not None else 0.0
            vote = votes.get(node_id, 0.0)
            parent = snap.parent(node_id)
            parent_vote = votes.get(parent, 0.0) if parent is not None else 0.0
            margin = margins.get(node_id, floor) if lexical_row is not None else 0.0
            score = (
                closeness * (vote + cfg.rollup * parent_vote) + taxonomy_weight * similarity
                + cfg.lexical_weight * margin
            )
            sources = (
                tuple(voters.get(node_id, ()))
                + (("taxonomy",) if node_id in from_taxonomy else ())
                + (("lexical",) if node_id in from_lexical else ())
            )
            candidates.append(Candidate(node_id, score, vote, similarity, sources, margin))
        candidates.sort(key=lambda c: (-c.score, c.id))
        kept = candidates[: cfg.limit]
        if kept:
            temperature = cfg.temperature if lexical_row is not None else cfg.knn_temperature
            logits = np.array([c.score for c in kept]) / max(temperature, 1e-6)
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            kept = [replace(c, probability=float(p)) for c, p in zip(kept, probs, strict=True)]
        return tuple(kept)
