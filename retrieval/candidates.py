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
   signal with an empty example pool, and the tie-breaker between sparse votes).

``score = vote + rollup * parent_vote + taxonomy_weight * cosine``; only allowed ids (the
active leaves by default) are returned, best first, with the provenance of each.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from retrieval.embedder import Embedder, Vectors
from retrieval.examples import Example
from retrieval.index import ExampleIndex
from retrieval.taxonomy_search import TaxonomyIndex
from retrieval.text import DEFAULT_MAX_CHARS, ProductLike, text_of
from taxonomy import Snapshot


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
    limit: int = 20
    max_chars: int = DEFAULT_MAX_CHARS


@dataclass(frozen=True, slots=True)
class Candidate:
    id: str
    score: float
    vote: float  # share of the neighbours' (weighted) votes for this node, 0..1
    similarity: float  # cosine between the product and the node's text
    sources: tuple[str, ...]  # provenance: "example:<id>" voters, "taxonomy" for node search


@dataclass(frozen=True, slots=True)
class Neighbour:
    example: Example
    score: float
    tags: tuple[str, ...]  # the example's tags as active ids of this snapshot


@dataclass(frozen=True, slots=True)
class Retrieval:
    neighbours: tuple[Neighbour, ...]
    candidates: tuple[Candidate, ...]


class CandidateGenerator:
    """Neighbours and ranked candidate tags for batches of products against one snapshot.

    ``index`` may be None or empty: candidates then come from taxonomy search alone.
    ``allowed`` restricts the returned ids (default: the snapshot's active leaves); ids not
    active in the snapshot are refused.
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
    ) -> None:
        if index is not None and index.dim != embedder.dim:
            raise ValueError(f"index dimension {index.dim} != embedder dimension {embedder.dim}")
        self.embedder = embedder
        self.snapshot = snapshot
        self.index = index
        self.config = config or CandidateConfig()
        allowed_ids = snapshot.active_leaf_ids if allowed is None else frozenset(allowed)
        inactive = sorted(a for a in allowed_ids if a not in snapshot.active_ids)
        if inactive:
            raise ValueError(f"allowed ids not active in the taxonomy: {inactive[:5]}")
        self.allowed = allowed_ids
        if taxonomy_index is None or set(taxonomy_index.ids) != set(allowed_ids):
            taxonomy_index = TaxonomyIndex(snapshot, embedder, allowed_ids)
        self.taxonomy_index = taxonomy_index
        self._resolved: dict[str, tuple[str, ...]] = {}

    def retrieve(self, products: Sequence[ProductLike | str]) -> list[Retrieval]:
        """Batched: one embedding call and one index search for all products."""
        texts = [text_of(p, self.config.max_chars) for p in products]
        return self.retrieve_vectors(self.embedder.encode(texts))

    def retrieve_vectors(self, queries: Vectors) -> list[Retrieval]:
        cfg = self.config
        if len(queries) == 0:
            return []
        if self.index is not None and len(self.index) and cfg.neighbours > 0:
            hits = self.index.search(queries, cfg.neighbours)
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
            out.append(Retrieval(tuple(neighbours), self._rank(neighbours, None if sims is None else sims[row])))
        return out

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

    def _rank(self, neighbours: Sequence[Neighbour], sims: Vectors | None) -> tuple[Candidate, ...]:
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

        candidates = []
        for node_id in pool:
            similarity = float(sims[self.taxonomy_index.position[node_id]]) if sims is not None else 0.0
            vote = votes.get(node_id, 0.0)
            parent = snap.parent(node_id)
            parent_vote = votes.get(parent, 0.0) if parent is not None else 0.0
            score = vote + cfg.rollup * parent_vote + cfg.taxonomy_weight * similarity
            sources = tuple(voters.get(node_id, ())) + (("taxonomy",) if node_id in from_taxonomy else ())
            candidates.append(Candidate(node_id, score, vote, similarity, sources))
        candidates.sort(key=lambda c: (-c.score, c.id))
        return tuple(candidates[: cfg.limit])
