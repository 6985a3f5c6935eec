"""Leaf accuracy and speed of the tagger pipelines on the first N MWPD dev items.

The pool (10,012 labelled products) is the example index. A stop-gap measurement until the
eval runner of issue 7 exists; usage::

    .venv/bin/python -m evals.benchmarks.pipelines_mwpd [N]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from agent.contract import Product
from agent.llm import create_backend
from agent.tagger import Tagger, TaggerConfig
from retrieval import (
    CachedEmbedder,
    CandidateGenerator,
    EmbeddingCache,
    Example,
    SentenceTransformerEmbedder,
    build_index,
)
from taxonomy import load_taxonomy

REPO = Path(__file__).resolve().parents[2]
MWPD = REPO.parent / "shared" / "data" / "mwpd"
RUNS: list[tuple[str, float]] = [("knn", 0.0), ("rag", 0.3), ("rag", 1.0), ("cascade", 0.3)]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def main(n: int) -> None:
    snap = load_taxonomy(MWPD / "taxonomy.json", "json")
    embedder = CachedEmbedder(
        SentenceTransformerEmbedder(), EmbeddingCache(REPO / ".cache" / "embeddings")
    )
    examples = [
        Example(
            id=r["id"], title=r["title"], description=r["description"], tags=(r["gold_leaf"],),
            category_text=r["extra"].get("category_text") or "",
        )
        for r in _jsonl(MWPD / "pool.jsonl")
    ]
    generator = CandidateGenerator(embedder, snap, build_index(embedder, examples))
    dev = _jsonl(MWPD / "dev.jsonl")[:n]
    products = [
        Product(
            id=r["id"], title=r["title"] or "-", description=r["description"][:5000],
            category_text=(r["extra"].get("category_text") or "")[:1000],
        )
        for r in dev
    ]
    llm = create_backend("embedded")
    for pipeline, weight in RUNS:
        config = TaggerConfig(pipeline=pipeline, llm_weight=weight)  # type: ignore[arg-type]
        tagger = Tagger(generator, None if pipeline == "knn" else llm, config=config)
        start = time.perf_counter()
        results = tagger.tag_many(products)
        elapsed = time.perf_counter() - start
        hits = sum(r.tags[0].id == d["gold_leaf"] for r, d in zip(results, dev, strict=True))
        print(
            f"{pipeline:8s} llm_weight={weight}: leaf accuracy {100 * hits / n:.1f}% "
            f"on {n} dev items, {n / elapsed:.1f} items/s"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60)
