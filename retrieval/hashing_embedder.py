"""A deterministic embedder without a model: hashed word and character n-grams.

It exists for tests and development, beside the real :class:`SentenceTransformerEmbedder`:
tests about logic (the service, jobs, auth, limits, index publishing, crash safety) need
vectors in which "cast iron skillet" lands near "Cast iron skillet 10 inch", not MiniLM's
semantics, and loading torch + MiniLM costs seconds per process. Vectors are the same on
every machine and Python run (scikit-learn's signed MurmurHash3 feature hashing, no
``hash()`` randomisation), L2-normalised float32, so inner product is cosine as with the
real embedder. It is lexical only: "sneakers" is not near "running shoes". Select it with
``TAGSMITH_EMBEDDER__BACKEND=hashing``; never for real tagging quality.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from retrieval.embedder import Vectors, normalize
from retrieval.readability import UNSPACED_SCRIPTS, uncovered_share

#: bump when the features change: the name keys caches and index manifests
_FEATURES_VERSION = 1


class HashingEmbedder:
    """Word unigrams + bigrams and character 3–5-grams within words, hashed into ``dim``
    signed buckets, sub-linear term frequency, L2-normalised."""

    def __init__(self, dim: int = 512) -> None:
        if dim < 16:
            raise ValueError("dim must be >= 16")
        from sklearn.feature_extraction.text import HashingVectorizer

        common: dict[str, Any] = {
            "n_features": dim, "alternate_sign": True, "norm": None, "lowercase": True,
            "dtype": np.float32,
        }
        self._words = HashingVectorizer(analyzer="word", ngram_range=(1, 2), **common)
        self._chars = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), **common)
        self._dim = dim
        self._name = f"hashing-{dim}@v{_FEATURES_VERSION}"

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        docs = list(texts)
        # words weigh as much as all of a text's character grams together: an exact word
        # match ranks above a near-spelling
        words = normalize(self._sublinear(self._words.transform(docs).toarray()))
        chars = normalize(self._sublinear(self._chars.transform(docs).toarray()))
        return normalize(words + chars)

    @staticmethod
    def _sublinear(counts: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.sign(counts) * np.log1p(np.abs(counts))
        return out

    def unreadable(self, texts: Sequence[str]) -> list[float]:
        """Its features are words split on spaces (and character grams inside them): a
        script written without spaces between words (Chinese, Japanese, Thai…) turns a
        whole phrase into one "word" it cannot relate to anything, so it does not read it."""
        return [uncovered_share(t, uncovered=UNSPACED_SCRIPTS) for t in texts]

    def __repr__(self) -> str:
        return f"<HashingEmbedder {self._name}>"
