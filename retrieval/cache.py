"""A persistent embedding cache keyed by (embedder name, content hash of the text).

Re-building an index, re-running a benchmark or resuming an interrupted ``index build``
only encodes texts never seen before. Storage is one SQLite file: each ``put`` is one
transaction, so a crash loses at most the batch being written and never leaves a torn
entry (SQLite's journal makes commits atomic and durable). Several processes may share it.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from retrieval.embedder import Embedder, Vectors

if TYPE_CHECKING:
    from retrieval.prebuilt import PrebuiltVectors

CACHE_FILE = "embeddings.sqlite3"


def content_key(model: str, text: str) -> bytes:
    """sha256 of the embedder name and the exact text: any change of either is a miss."""
    return hashlib.sha256(model.encode("utf-8") + b"\x00" + text.encode("utf-8")).digest()


class EmbeddingCache:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / CACHE_FILE
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
        with self._lock, self._db:
            # WAL: readers never block the writer; synchronous=NORMAL is durable across
            # process crashes (only an OS crash may drop the last commits, never corrupt)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS embeddings ("
                " key BLOB PRIMARY KEY, dim INTEGER NOT NULL, vector BLOB NOT NULL)"
            )

    def get_many(self, model: str, texts: Sequence[str], dim: int) -> list[np.ndarray | None]:
        keys = [content_key(model, t) for t in texts]
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, dim, vector FROM embeddings WHERE key IN ({marks})", chunk
                ).fetchall()
                for key, row_dim, blob in rows:
                    # a wrong-sized blob (dim mismatch, damage) is treated as a miss
                    if row_dim == dim and len(blob) == 4 * dim:
                        found[bytes(key)] = np.frombuffer(blob, dtype=np.float32)
        return [found.get(k) for k in keys]

    def put_many(self, model: str, texts: Sequence[str], vectors: Vectors) -> None:
        rows = [
            (content_key(model, t), int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes())
            for t, v in zip(texts, vectors, strict=True)
        ]
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)", rows)

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()
        return int(count)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedEmbedder:
    """An :class:`Embedder` that serves repeated texts from an :class:`EmbeddingCache`.

    Texts the cache lacks are looked up in ``prebuilt`` (the vectors written at install
    time, see :mod:`retrieval.prebuilt`) before they are encoded; encoded texts go to the
    cache ``chunk`` at a time (an interrupted run keeps what it finished) and, when set,
    ``progress(done, total)`` is called after each chunk: a caller can show that a long
    encode is under way.
    """

    def __init__(
        self,
        embedder: Embedder,
        cache: EmbeddingCache,
        *,
        prebuilt: PrebuiltVectors | None = None,
        chunk: int = 256,
    ) -> None:
        self.inner = embedder
        self.cache = cache
        self.prebuilt = prebuilt
        self.chunk = max(1, chunk)
        self.progress: Callable[[int, int], None] | None = None
        self.hits = 0
        self.prebuilt_hits = 0
        self.misses = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    def unreadable(self, texts: Sequence[str]) -> list[float]:
        return self.inner.unreadable(texts)

    def encode(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        cached = self.cache.get_many(self.name, texts, self.dim)
        missing: dict[str, list[int]] = {}
        for i, (text, vector) in enumerate(zip(texts, cached, strict=True)):
            if vector is None:
                missing.setdefault(text, []).append(i)  # duplicates in a batch: encode once
            else:
                out[i] = vector
        self.hits += len(texts) - sum(len(v) for v in missing.values())
        if missing and self.prebuilt is not None:
            found = self.prebuilt.get_many(self.name, list(missing), self.dim)
            for text, vector in zip(list(missing), found, strict=True):
                if vector is not None:
                    out[missing.pop(text)] = vector
                    self.prebuilt_hits += 1
        if missing:
            # shortest first: texts of similar length share a chunk and pad little
            todo = sorted(missing, key=len)
            for start in range(0, len(todo), self.chunk):
                part = todo[start : start + self.chunk]
                fresh = self.inner.encode(part)
                self.cache.put_many(self.name, part, fresh)
                for text, vector in zip(part, fresh, strict=True):
                    out[missing[text]] = vector
                self.misses += len(part)
                if self.progress is not None:
                    self.progress(start + len(part), len(todo))
        return out
