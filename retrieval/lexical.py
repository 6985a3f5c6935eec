"""A lexical classifier trained on the tagged examples: the second retrieval signal.

Embedding neighbours are good at meaning and bad at the exact tokens that decide many
product classes (model numbers, brand lines, shop breadcrumbs, units). A linear SVM over
TF-IDF word 1–2-grams and character 3–5-grams (inside word boundaries) catches those. On
MWPD dev it scores WAF1 88.9 alone and lifts the embedding vote from 84.1 to ~89 when
fused (``python -m evals.benchmarks.lexical_mwpd``; docs/benchmarks.md).

The model is stored as plain arrays (vocabularies as JSON, idf and weights as ``.npy``),
never pickled, so a generation directory can be read without trusting it to run code.
Weights below ``prune`` are zeroed and kept sparse: ~30% of a dense matrix survive, which
bounds memory on large catalogs.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.preprocessing import normalize as l2_normalize
from sklearn.svm import LinearSVC

from retrieval.examples import Example
from retrieval.text import ProductLike, text_of

#: the classifier reads more text than the embedder (600 chars): sparse features are cheap
LEXICAL_MAX_CHARS = 1500
FILES = ("lexical.json", "lexical_idf_word.npy", "lexical_idf_char.npy", "lexical_coef.npz")


@dataclass(frozen=True, slots=True)
class LexicalConfig:
    word_min_df: int = 2
    char_min_df: int = 3
    char_max_features: int = 100_000
    c: float = 0.5  # LinearSVC regularisation (tuned on MWPD pool/dev)
    min_class_examples: int = 3  # rarer tags are left to the neighbours: nothing to learn
    prune: float = 1e-3  # |weight| below this is dropped
    max_chars: int = LEXICAL_MAX_CHARS


def _analyzers(vocab_word: dict[str, int], vocab_char: dict[str, int]) -> tuple[CountVectorizer, CountVectorizer]:
    word = CountVectorizer(ngram_range=(1, 2), vocabulary=vocab_word, dtype=np.float32)
    char = CountVectorizer(analyzer="char_wb", ngram_range=(3, 5), vocabulary=vocab_char, dtype=np.float32)
    return word, char


def _weigh(counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    """sublinear tf × idf, L2-normalised: what TfidfVectorizer(sublinear_tf=True) computes."""
    counts = counts.tocsr().astype(np.float32)
    counts.data = 1.0 + np.log(counts.data)
    return sp.csr_matrix(l2_normalize(counts.multiply(idf.astype(np.float32)).tocsr()))


class LexicalClassifier:
    """Per-class decision scores (higher = more likely) for product texts."""

    def __init__(
        self,
        classes: Sequence[str],
        vocab_word: dict[str, int],
        vocab_char: dict[str, int],
        idf_word: np.ndarray,
        idf_char: np.ndarray,
        coef: sp.csr_matrix,
        intercept: np.ndarray,
        config: LexicalConfig,
        n_examples: int,
    ) -> None:
        self.classes = tuple(classes)
        self.position = {c: i for i, c in enumerate(self.classes)}
        self.config = config
        self.n_examples = n_examples
        self._vocab_word, self._vocab_char = vocab_word, vocab_char
        self._idf_word, self._idf_char = idf_word, idf_char
        self._word, self._char = _analyzers(vocab_word, vocab_char)
        self._coef_t = sp.csr_matrix(coef.T)  # features × classes (CSR @ CSR: no conversion per call)
        self._intercept = intercept.astype(np.float32)

    # -- training ----------------------------------------------------------------------
    @staticmethod
    def trainable(examples: Sequence[Example], config: LexicalConfig | None = None) -> bool:
        """Whether :meth:`fit` would train a classifier (at least two tags with
        ``min_class_examples`` examples each); cheap: it only counts tags."""
        cfg = config or LexicalConfig()
        counts = Counter(tag for ex in examples for tag in ex.tags)
        return sum(1 for n in counts.values() if n >= cfg.min_class_examples) >= 2

    @classmethod
    def fit(
        cls, examples: Sequence[Example], config: LexicalConfig | None = None,
        *, classes: Collection[str] | None = None,
    ) -> LexicalClassifier | None:
        """Train on the examples' texts and tags (an example with k tags is k rows).

        Tags with fewer than ``min_class_examples`` examples are left out, unless named in
        ``classes`` (cross-fitting, :mod:`retrieval.calibration`: the classifier trained
        without a held-out fold keeps the classes the full pool's classifier has). Returns
        None when fewer than two tags remain: nothing to discriminate.
        """
        cfg = config or LexicalConfig()
        counts = Counter(tag for ex in examples for tag in ex.tags)
        texts: list[str] = []
        labels: list[str] = []
        for ex in examples:
            text = text_of(ex, cfg.max_chars)
            for tag in ex.tags:
                if counts[tag] >= cfg.min_class_examples or (classes is not None and tag in classes):
                    texts.append(text)
                    labels.append(tag)
        if len(set(labels)) < 2:
            return None
        word_min_df = cfg.word_min_df if len(texts) >= 50 * cfg.word_min_df else 1
        char_min_df = cfg.char_min_df if len(texts) >= 50 * cfg.char_min_df else 1
        word = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=word_min_df, dtype=np.float32)
        char = TfidfVectorizer(
            sublinear_tf=True, analyzer="char_wb", ngram_range=(3, 5), min_df=char_min_df,
            max_features=cfg.char_max_features, dtype=np.float32,
        )
        features = sp.hstack([word.fit_transform(texts), char.fit_transform(texts)]).tocsr()
        svm = LinearSVC(C=cfg.c, random_state=0).fit(features, labels)
        coef = np.asarray(svm.coef_, dtype=np.float32)
        intercept = np.asarray(svm.intercept_, dtype=np.float32)
        classes = [str(c) for c in svm.classes_]
        if len(classes) == 2:  # sklearn keeps one row for binary problems: score = ±row
            coef = np.vstack([-coef[0], coef[0]])
            intercept = np.array([-intercept[0], intercept[0]], dtype=np.float32)
        coef[np.abs(coef) < cfg.prune] = 0.0
        vocab_word = {str(k): int(v) for k, v in word.vocabulary_.items()}
        vocab_char = {str(k): int(v) for k, v in char.vocabulary_.items()}
        return cls(
            classes, vocab_word, vocab_char,
            np.asarray(word.idf_, dtype=np.float32), np.asarray(char.idf_, dtype=np.float32),
            sp.csr_matrix(coef), intercept, cfg, len(examples),
        )

    # -- scoring -----------------------------------------------------------------------
    def features(self, texts: Sequence[str]) -> sp.csr_matrix:
        word = _weigh(self._word.transform(texts), self._idf_word)
        char = _weigh(self._char.transform(texts), self._idf_char)
        return sp.hstack([word, char]).tocsr()

    def decision(self, products: Sequence[ProductLike | str]) -> np.ndarray:
        """(len(products), len(classes)) float32 SVM margins."""
        if not products:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        texts = [text_of(p, self.config.max_chars) for p in products]
        scores = self.features(texts) @ self._coef_t
        return np.asarray(scores.toarray() if sp.issparse(scores) else scores, dtype=np.float32) + self._intercept

    # -- persistence (no pickle) -------------------------------------------------------
    def to_files(self) -> dict[str, bytes]:
        meta: dict[str, Any] = {
            "classes": list(self.classes),
            "vocab_word": self._vocab_word,
            "vocab_char": self._vocab_char,
            "config": asdict(self.config),
            "n_examples": self.n_examples,
        }
        coef = sp.csr_matrix(self._coef_t.T)
        buf = io.BytesIO()
        np.savez(buf, data=coef.data, indices=coef.indices, indptr=coef.indptr,
                 shape=np.array(coef.shape), intercept=self._intercept)
        return {
            "lexical.json": json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8"),
            "lexical_idf_word.npy": _npy(self._idf_word),
            "lexical_idf_char.npy": _npy(self._idf_char),
            "lexical_coef.npz": buf.getvalue(),
        }

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> LexicalClassifier:
        meta = json.loads(files["lexical.json"])
        arrays = np.load(io.BytesIO(files["lexical_coef.npz"]), allow_pickle=False)
        shape = tuple(int(x) for x in arrays["shape"])
        coef = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
        return cls(
            meta["classes"], meta["vocab_word"], meta["vocab_char"],
            np.load(io.BytesIO(files["lexical_idf_word.npy"]), allow_pickle=False),
            np.load(io.BytesIO(files["lexical_idf_char.npy"]), allow_pickle=False),
            coef, arrays["intercept"], LexicalConfig(**meta["config"]), int(meta["n_examples"]),
        )


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()
