"""The example index: FAISS inner-product search over tagged products with stable string ids.

FAISS wants int64 ids; we keep a two-way map from the caller's string ids to ints that are
never reused (an update gets a fresh int), so a stale int can never alias another product.
``flat`` (default) is exact search: ``IndexIDMap2(IndexFlatIP)``, which supports removal.
``hnsw`` is approximate, for large catalogs: HNSW cannot remove vectors, so deletions are
tombstones filtered out at search time and the graph is rebuilt from the stored vectors
once tombstones pass a quarter of the index. Only the generic FAISS API is used, so the
same code runs on ``faiss-gpu``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import faiss
import numpy as np

from retrieval.embedder import Vectors, normalize
from retrieval.errors import ExampleError, IndexCorruptError
from retrieval.examples import Example, examples_to_jsonl

IndexKind = Literal["flat", "hnsw"]
INDEX_KINDS: tuple[str, ...] = get_args(IndexKind)

#: rebuild the HNSW graph when this share of its vectors are tombstones
_REBUILD_DEAD_SHARE = 0.25


@dataclass(frozen=True, slots=True)
class Hit:
    example: Example
    score: float  # cosine similarity (vectors are normalised)

    @property
    def id(self) -> str:
        return self.example.id


class ExampleIndex:
    def __init__(
        self,
        dim: int,
        *,
        kind: IndexKind = "flat",
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 128,
    ) -> None:
        if kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind {kind!r}: choose one of {', '.join(INDEX_KINDS)}")
        if dim < 1:
            raise ValueError("dim must be >= 1")
        self.dim = dim
        self.kind: IndexKind = kind
        self.params = {"hnsw_m": hnsw_m, "ef_construction": ef_construction, "ef_search": ef_search}
        self._faiss: Any = self._new_faiss()
        self._int_of: dict[str, int] = {}
        self._ext_of: dict[int, str] = {}
        self._examples: dict[str, Example] = {}
        self._dead: set[int] = set()
        self._next = 0

    def _new_faiss(self) -> Any:
        base: Any
        if self.kind == "flat":
            base = faiss.IndexFlatIP(self.dim)
        else:
            base = faiss.IndexHNSWFlat(self.dim, self.params["hnsw_m"], faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efConstruction = self.params["ef_construction"]
            base.hnsw.efSearch = self.params["ef_search"]
        return faiss.IndexIDMap2(base)

    # ---- reading --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._examples)

    def __contains__(self, example_id: object) -> bool:
        return example_id in self._examples

    def __iter__(self) -> Iterator[Example]:
        return iter(self._examples.values())

    def ids(self) -> list[str]:
        return list(self._examples)

    def get(self, example_id: str) -> Example | None:
        return self._examples.get(example_id)

    def vector(self, example_id: str) -> Vectors:
        return np.asarray(self._faiss.reconstruct(self._int_of[example_id]), dtype=np.float32)

    def search(self, queries: Vectors, k: int = 10) -> list[list[Hit]]:
        """Top-``k`` examples per query row, best first."""
        queries = self._check(queries)
        if k < 1 or len(self) == 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        # over-fetch past tombstones so that k live hits come back
        fetch = min(k + len(self._dead), self._faiss.ntotal)
        scores, labels = self._faiss.search(queries, fetch)
        out: list[list[Hit]] = []
        for row_scores, row_labels in zip(scores, labels, strict=True):
            hits: list[Hit] = []
            for score, label in zip(row_scores, row_labels, strict=True):
                if label < 0 or int(label) in self._dead:
                    continue
                hits.append(Hit(self._examples[self._ext_of[int(label)]], float(score)))
                if len(hits) == k:
                    break
            out.append(hits)
        return out

    # ---- writing --------------------------------------------------------------------------
    def upsert(self, examples: Sequence[Example], vectors: Vectors) -> None:
        """Add examples, replacing those whose id is already present (vector and record)."""
        vectors = self._check(vectors)
        if len(examples) != len(vectors):
            raise ValueError(f"{len(examples)} examples but {len(vectors)} vectors")
        # last occurrence wins inside one batch, like sequential upserts would
        last = {ex.id: i for i, ex in enumerate(examples)}
        if len(last) != len(examples):
            keep = sorted(last.values())
            examples = [examples[i] for i in keep]
            vectors = vectors[keep]
        if any(not ex.id for ex in examples):
            raise ExampleError("example ids must be non-empty")
        self.delete([ex.id for ex in examples if ex.id in self._examples])
        ints = np.arange(self._next, self._next + len(examples), dtype=np.int64)
        self._next += len(examples)
        self._faiss.add_with_ids(vectors, ints)
        for ex, i in zip(examples, ints.tolist(), strict=True):
            self._int_of[ex.id] = i
            self._ext_of[i] = ex.id
            self._examples[ex.id] = ex

    def delete(self, example_ids: Iterable[str]) -> int:
        """Remove examples by id; unknown ids are ignored. Returns how many were removed."""
        ints = []
        for ex_id in set(example_ids):
            i = self._int_of.pop(ex_id, None)
            if i is None:
                continue
            del self._ext_of[i]
            del self._examples[ex_id]
            ints.append(i)
        if not ints:
            return 0
        if self.kind == "flat":
            self._faiss.remove_ids(np.asarray(ints, dtype=np.int64))
        else:
            self._dead.update(ints)
            if len(self._dead) > _REBUILD_DEAD_SHARE * max(self._faiss.ntotal, 1):
                self.compact()
        return len(ints)

    def compact(self) -> None:
        """Rebuild the FAISS structure from the live vectors (drops HNSW tombstones)."""
        if not self._dead:
            return
        live = np.asarray(sorted(self._ext_of), dtype=np.int64)
        vectors = np.stack([self._faiss.reconstruct(int(i)) for i in live]) if len(live) else None
        self._faiss = self._new_faiss()
        if vectors is not None:
            self._faiss.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), live)
        self._dead.clear()

    def _check(self, vectors: Vectors) -> Vectors:
        arr = np.asarray(vectors, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ValueError(f"expected vectors of dimension {self.dim}, got shape {arr.shape}")
        # callers may pass raw model output: normalising keeps IP == cosine
        return normalize(arr)

    # ---- serialisation (used by retrieval.store, which adds checksums and atomicity) ------
    def to_files(self) -> dict[str, bytes]:
        ids = sorted(self._ext_of.items())
        meta = {
            "dim": self.dim,
            "kind": self.kind,
            "params": self.params,
            "next": self._next,
            "dead": sorted(self._dead),
            "ids": [[i, ext] for i, ext in ids],
        }
        return {
            "index.faiss": bytes(faiss.serialize_index(self._faiss)),
            "ids.json": json.dumps(meta, ensure_ascii=False).encode("utf-8"),
            "examples.jsonl": examples_to_jsonl(self._examples[ext] for _, ext in ids).encode("utf-8"),
        }

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> ExampleIndex:
        """Inverse of :meth:`to_files`. Callers verify checksums first: FAISS may crash
        (not raise) on damaged bytes, so this must never see unverified input."""
        try:
            meta = json.loads(files["ids.json"])
            index = cls(int(meta["dim"]), kind=meta["kind"], **meta["params"])
            index._faiss = faiss.deserialize_index(np.frombuffer(files["index.faiss"], dtype=np.uint8))
            examples = [
                Example.from_json(json.loads(line), "examples.jsonl")
                # "\n" only: str.splitlines() also splits on U+0085, U+2028 and U+2029, which
                # JSON (ensure_ascii=False) leaves raw inside a product's text
                for line in files["examples.jsonl"].decode("utf-8").split("\n")
                if line.strip()
            ]
            pairs = [(int(i), str(ext)) for i, ext in meta["ids"]]
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise IndexCorruptError(f"index files are inconsistent: {exc}") from exc
        if [ext for _, ext in pairs] != [ex.id for ex in examples]:
            raise IndexCorruptError("the id map and the stored examples disagree")
        if index._faiss.ntotal != len(pairs) + len(meta["dead"]) or index._faiss.d != index.dim:
            raise IndexCorruptError(
                f"the FAISS index holds {index._faiss.ntotal} vectors of dimension "
                f"{index._faiss.d}, the id map {len(pairs)} (+{len(meta['dead'])} deleted)"
            )
        index._int_of = {ext: i for i, ext in pairs}
        index._ext_of = dict(pairs)
        index._examples = {ex.id: ex for ex in examples}
        index._dead = {int(i) for i in meta["dead"]}
        index._next = int(meta["next"])
        return index
