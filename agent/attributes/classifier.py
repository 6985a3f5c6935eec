"""A text classifier per closed attribute, for values that are a judgement about the whole
product rather than words in it (WDC-PAVE's Product Type "Storage Solutions" for a "Drive",
a colour family): TF-IDF words and character n-grams + logistic regression, trained on the
examples that carry a value for the attribute. Its probabilities are a ranker feature and
its top values candidates (without a span: they come from the tagged examples).

Training features must not see the example they score: ``fit`` also returns out-of-fold
probabilities (2 folds) for the examples it was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MIN_EXAMPLES = 20
MAX_TEXT_CHARS = 600


def classifier_text(title: str, description: str) -> str:
    return f"{title} {title} {description[:MAX_TEXT_CHARS]}"


@dataclass
class ValueClassifiers:
    vectorizer: Any | None = None
    models: dict[str, Any] = field(default_factory=dict)
    #: attribute id -> example id -> out-of-fold value probabilities
    out_of_fold: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    @classmethod
    def fit(cls, texts: dict[str, str], labels: dict[str, dict[str, str]], *, seed: int = 0) -> ValueClassifiers:
        """``texts``: example id -> text; ``labels``: attribute id -> example id -> value key."""
        usable = {
            a: rows for a, rows in labels.items()
            if len(rows) >= MIN_EXAMPLES and len(set(rows.values())) >= 2
        }
        if not usable:
            return cls()
        from sklearn.feature_extraction.text import TfidfVectorizer
        from threadpoolctl import threadpool_limits

        ids = sorted(texts)
        vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1, max_features=50_000)
        matrix = vectorizer.fit_transform([texts[i] for i in ids])
        row_of = {ex_id: r for r, ex_id in enumerate(ids)}
        out = cls(vectorizer)
        with threadpool_limits(limits=1):
            for attr_id, rows in sorted(usable.items()):
                ex_ids = sorted(rows)
                y = [rows[i] for i in ex_ids]
                x = matrix[[row_of[i] for i in ex_ids]]
                out.models[attr_id] = _train(x, y, seed)
                oof: dict[str, dict[str, float]] = {}
                for fold in range(2):
                    train = [j for j in range(len(ex_ids)) if j % 2 != fold]
                    test = [j for j in range(len(ex_ids)) if j % 2 == fold]
                    if len({y[j] for j in train}) < 2:
                        continue
                    model = _train(x[train], [y[j] for j in train], seed)
                    probs = model.predict_proba(x[test])
                    for j, row in zip(test, probs, strict=True):
                        oof[ex_ids[j]] = {str(c): float(p) for c, p in zip(model.classes_, row, strict=True)}
                out.out_of_fold[attr_id] = oof
        return out

    def has(self, attr_id: str) -> bool:
        return attr_id in self.models

    def vector(self, text: str) -> Any:
        """The text's features, computed once per product for all its attributes."""
        return None if self.vectorizer is None else self.vectorizer.transform([text])

    def predict(self, attr_id: str, vector: Any) -> dict[str, float]:
        model = self.models.get(attr_id)
        if model is None or vector is None:
            return {}
        import numpy as np

        # the model's own predict_proba, spelled out: sklearn's per-call checks cost more
        # than the product (a 1 x n sparse row) on this path
        z = np.asarray(vector @ model.coef_.T).ravel() + model.intercept_
        if len(model.classes_) == 2:
            p1 = 1.0 / (1.0 + np.exp(-z[0]))
            return {str(model.classes_[0]): float(1.0 - p1), str(model.classes_[1]): float(p1)}
        e = np.exp(z - z.max())
        probs = e / e.sum()
        return {str(c): float(p) for c, p in zip(model.classes_, probs, strict=True)}

    def held_out(self, attr_id: str, example_id: str) -> dict[str, float]:
        return self.out_of_fold.get(attr_id, {}).get(example_id, {})


def _train(x: Any, y: Sequence[str], seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=5.0, max_iter=1000, random_state=seed)
    model.fit(x, list(y))
    return model
