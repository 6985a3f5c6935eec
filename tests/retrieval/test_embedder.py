from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval import (
    CachedEmbedder,
    Embedder,
    EmbedderError,
    EmbeddingCache,
    SentenceTransformerEmbedder,
)


@pytest.mark.smoke
def test_default_embedder_is_offline_minilm_and_normalised(embedder: SentenceTransformerEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    assert embedder.dim == 384
    assert embedder.name.startswith("all-MiniLM-L6-v2@") and "+seq128" in embedder.name
    v = embedder.encode(["red cotton t-shirt", "crew neck tee shirt", "cast iron frying pan"])
    assert v.dtype == np.float32 and v.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2  # meaning, not noise
    assert embedder.encode([]).shape == (0, 384)


def test_batching_does_not_change_vectors(embedder: SentenceTransformerEmbedder) -> None:
    texts = [f"product number {i} with a description" for i in range(7)]
    small = SentenceTransformerEmbedder(batch_size=2)
    np.testing.assert_allclose(small.encode(texts), embedder.encode(texts), atol=1e-5)


def test_not_a_model_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="not a sentence-transformers model directory"):
        SentenceTransformerEmbedder(tmp_path)


def test_model_directory_by_configuration(embedder: SentenceTransformerEmbedder) -> None:
    other = SentenceTransformerEmbedder(embedder.model_dir, max_seq_length=64)
    # same weights, other truncation: another name, so caches and indexes are not shared
    assert other.name != embedder.name and "+seq64" in other.name
    assert other.name.split("+")[0].split("@")[1] == embedder.name.split("+")[0].split("@")[1]


class CountingEmbedder:
    """Deterministic fake that counts what it was asked to encode."""

    name = "counting"
    dim = 4

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts):  # type: ignore[no-untyped-def]
        self.calls.append(list(texts))
        out = np.array([[len(t), 1.0, t.count("a"), 0.5] for t in texts], dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_cache_serves_repeats_and_persists(tmp_path: Path) -> None:
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner, EmbeddingCache(tmp_path))
    first = cached.encode(["a", "bb", "a", "ccc"])
    assert inner.calls == [["a", "bb", "ccc"]]  # duplicate in one batch encoded once
    again = cached.encode(["ccc", "dddd"])
    assert inner.calls[-1] == ["dddd"]
    np.testing.assert_array_equal(again[0], first[3])
    assert (cached.hits, cached.misses) == (1, 4)  # misses count distinct texts encoded

    # a new process (new cache object) reads what the first one committed
    fresh_inner = CountingEmbedder()
    reopened = CachedEmbedder(fresh_inner, EmbeddingCache(tmp_path))
    np.testing.assert_array_equal(reopened.encode(["a", "bb"]), first[:2])
    assert fresh_inner.calls == []


def test_cache_is_keyed_by_model_name(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    one = CountingEmbedder()
    CachedEmbedder(one, cache).encode(["x"])
    two = CountingEmbedder()
    two.name = "another-model"
    CachedEmbedder(two, cache).encode(["x"])
    assert two.calls == [["x"]]
