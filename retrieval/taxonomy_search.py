"""Semantic search over the taxonomy's own nodes: each node embedded as its path, synonyms
and description, so a product can reach a tag that no stored example carries yet.

Node vectors depend only on the node texts and the embedder, so they are memoised in
process by (embedder name, content hash of the texts) — a new snapshot version whose nodes
did not change reuses them — and, through a :class:`~retrieval.cache.CachedEmbedder`, on
disk per text: after an edit only the changed nodes are re-encoded.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Collection, Sequence

import numpy as np

from retrieval.embedder import Embedder, Vectors
from taxonomy import Snapshot

_MEMO_SIZE = 8
_memo: OrderedDict[tuple[str, str], Vectors] = OrderedDict()
_memo_lock = threading.Lock()


def node_text(snapshot: Snapshot, node_id: str) -> str:
    """``Path > To > Node``, then synonyms and a short description when the taxonomy has them:
    the path disambiguates (``Cases`` under Phones vs under Cameras)."""
    node = snapshot.nodes[node_id]
    text = snapshot.path_text(node_id, sep=" > ")
    if node.synonyms:
        text += ". Also: " + ", ".join(node.synonyms)
    if node.description:
        text += ". " + node.description[:200]
    return text


class TaxonomyIndex:
    """Vectors of ``node_ids`` (default: the snapshot's active leaves), searchable by cosine."""

    def __init__(
        self,
        snapshot: Snapshot,
        embedder: Embedder,
        node_ids: Collection[str] | None = None,
    ) -> None:
        ids = sorted(snapshot.active_leaf_ids if node_ids is None else node_ids)
        unknown = [i for i in ids if i not in snapshot]
        if unknown:
            raise KeyError(f"not in taxonomy version {snapshot.version}: {unknown[:5]}")
        self.snapshot = snapshot
        self.ids: tuple[str, ...] = tuple(ids)
        self.position = {node_id: i for i, node_id in enumerate(self.ids)}
        texts = [node_text(snapshot, i) for i in self.ids]
        digest = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()
        self.content_hash = digest
        key = (embedder.name, digest)
        with _memo_lock:
            vectors = _memo.get(key)
            if vectors is not None:
                _memo.move_to_end(key)
        if vectors is None:
            vectors = embedder.encode(texts) if texts else np.zeros((0, embedder.dim), np.float32)
            with _memo_lock:
                _memo[key] = vectors
                while len(_memo) > _MEMO_SIZE:
                    _memo.popitem(last=False)
        self.vectors: Vectors = vectors

    def __len__(self) -> int:
        return len(self.ids)

    def similarities(self, queries: Vectors) -> Vectors:
        """Cosine of every query (rows) with every node (columns)."""
        return np.asarray(queries @ self.vectors.T, dtype=np.float32)

    def search(self, queries: Vectors, k: int = 10) -> list[list[tuple[str, float]]]:
        sims = self.similarities(queries)
        return [_top(row, self.ids, k) for row in sims]


def _top(row: Vectors, ids: Sequence[str], k: int) -> list[tuple[str, float]]:
    k = min(k, len(ids))
    if k <= 0:
        return []
    part = np.argpartition(-row, k - 1)[:k]
    order = part[np.argsort(-row[part], kind="stable")]
    return [(ids[i], float(row[i])) for i in order]
