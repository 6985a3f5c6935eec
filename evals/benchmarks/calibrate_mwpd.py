"""Calibrate the candidate temperature on held-out *pool* items (never on dev).

The pool is split 80/20 by a hash of the item id; the index and the lexical classifier are
built from the 80%, and for each temperature the 20% get their top-candidate confidence
(the probability the tagger reports, renormalised over its ``max_candidates``). Prints the
expected calibration error (10 bins) and NLL of the gold leaf per temperature::

    .venv/bin/python -m evals.benchmarks.calibrate_mwpd
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from retrieval import (
    CachedEmbedder,
    CandidateConfig,
    CandidateGenerator,
    EmbeddingCache,
    Example,
    LexicalClassifier,
    SentenceTransformerEmbedder,
    build_index,
)
from retrieval.calibration import ece
from taxonomy import load_taxonomy

REPO = Path(__file__).resolve().parents[2]
MWPD = REPO.parent / "shared" / "data" / "mwpd"
TEMPERATURES = (0.5, 0.75, 0.85, 1.0, 1.25)
KNN_TEMPERATURES = (0.2, 0.3, 0.33, 0.4, 0.5)
MAX_CANDIDATES = 8


def _example(r: dict[str, Any]) -> Example:
    return Example(
        id=r["id"], title=r["title"] or "-", description=r["description"][:5000],
        tags=(r["gold_leaf"],), category_text=(r["extra"].get("category_text") or "")[:1000],
    )


def _held_out(example_id: str) -> bool:
    return hashlib.sha256(example_id.encode()).digest()[0] < 52  # ~20%


def main() -> None:
    snap = load_taxonomy(MWPD / "taxonomy.json", "json")
    embedder = CachedEmbedder(SentenceTransformerEmbedder(), EmbeddingCache(REPO / ".cache" / "embeddings"))
    with (MWPD / "pool.jsonl").open(encoding="utf-8") as fh:
        pool = [_example(json.loads(line)) for line in fh]
    train = [e for e in pool if not _held_out(e.id)]
    held = [e for e in pool if _held_out(e.id)]
    index = build_index(embedder, train)
    lexical = LexicalClassifier.fit(train)
    print(f"train {len(train)}, held out {len(held)}")
    for use_lexical, temperature in [(True, t) for t in TEMPERATURES] + [(False, t) for t in KNN_TEMPERATURES]:
        config = replace(CandidateConfig(), temperature=temperature, knn_temperature=temperature)
        generator = CandidateGenerator(embedder, snap, index, config=config, lexical=lexical)
        conf, correct, nll = [], [], []
        for ex, r in zip(held, generator.retrieve(held, lexical=use_lexical), strict=True):
            top = r.candidates[:MAX_CANDIDATES]
            total = sum(c.probability for c in top)
            conf.append(top[0].probability / total)
            correct.append(top[0].id == ex.tags[0])
            gold = next((c.probability / total for c in top if c.id == ex.tags[0]), 1e-6)
            nll.append(-np.log(max(gold, 1e-6)))
        c, k = np.array(conf), np.array(correct, dtype=float)
        print(
            f"{'hybrid' if use_lexical else 'knn'} temperature {temperature:.2f}: accuracy {100 * k.mean():.1f}, mean confidence "
            f"{100 * c.mean():.1f}, ECE {ece(c, k):.2f}, NLL {np.mean(nll):.3f}"
        )


if __name__ == "__main__":
    main()
