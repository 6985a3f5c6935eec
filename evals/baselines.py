"""The classic supervised reference: TF-IDF word 1–2-grams + a linear SVM, no embeddings,
no LLM. Every evaluator asks how tagsmith compares with it, so it runs through the same
runner and produces the same output contract as the tagger pipelines.

It reads title + description only (the textbook setup, ~86 WAF1 on MWPD dev); the
production ``hybrid`` pipeline's lexical classifier also reads breadcrumbs and character
n-grams and is fused with the embedding neighbours. Confidence is a softmax over the SVM
margins (temperature 0.25): a ranking score, not a calibrated probability.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

from agent.contract import Evidence, LLMEvidence, Product, Tag, TagResult, Timings
from retrieval import Example
from taxonomy import Snapshot

NAME = "tfidf-svm"
TEMPERATURE = 0.25


def _text(title: str, description: str) -> str:
    return f"{title} . {description[:1000]}"


class TfidfSvmBaseline:
    """Fitted on examples (first tag of each, resolved in ``snapshot``); tags products."""

    def __init__(self, snapshot: Snapshot, examples: Sequence[Example], *, review_threshold: float = 0.5) -> None:
        self.snapshot = snapshot
        self.review_threshold = review_threshold
        rows = [(ex, snapshot.resolve(ex.tags[0])) for ex in examples if ex.tags]
        rows = [(ex, tag) for ex, tag in rows if tag is not None]
        if len({tag for _, tag in rows}) < 2:
            raise ValueError("the tfidf-svm baseline needs examples of at least two tags")
        self.vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2, dtype=np.float32)
        features = self.vectorizer.fit_transform([_text(ex.title, ex.description) for ex, _ in rows])
        self.svm = LinearSVC(C=0.5, random_state=0).fit(features, [tag for _, tag in rows])
        self.classes = [str(c) for c in self.svm.classes_]

    def tag_many(self, products: Sequence[Product]) -> list[TagResult]:
        start = time.perf_counter()
        features = self.vectorizer.transform([_text(p.title, p.description) for p in products])
        margins = np.asarray(self.svm.decision_function(features))
        if margins.ndim == 1:  # sklearn's binary case: one score, positive = classes[1]
            margins = np.column_stack([-margins, margins])
        per_item_ms = (time.perf_counter() - start) * 1000.0 / max(1, len(products))
        return [self._result(p, row, per_item_ms) for p, row in zip(products, margins, strict=True)]

    def _result(self, product: Product, margins: np.ndarray, ms: float) -> TagResult:
        logits = margins / TEMPERATURE
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        best = int(np.argmax(margins))
        tag_id = self.classes[best]
        confidence = float(probs[best])
        node = self.snapshot.node(tag_id)
        return TagResult(
            id=product.id,
            tags=[Tag(id=tag_id, name=node.name, path=list(self.snapshot.path_names(tag_id)),
                      confidence=round(confidence, 6))],
            needs_review=confidence < self.review_threshold,
            taxonomy_version=self.snapshot.version,
            pipeline=NAME,
            evidence=Evidence(neighbors=[], llm=LLMEvidence(attempts=0, fallback_used=False)),
            timings_ms=Timings(retrieval=round(ms, 3), llm=0.0, validation=0.0, total=round(ms, 3)),
        )
