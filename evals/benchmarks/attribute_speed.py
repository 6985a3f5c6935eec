"""What attribute tagging adds to a product's latency in the default service configuration
(hybrid pipeline, MiniLM, the packaged Shopify taxonomy with its attributes and the shipped
examples), on real product titles (Flipkart dev: apparel, jewellery, home…): attributes off,
on, and on with the embedded LLM (SmolLM2 via llama.cpp) asked once per product.

Usage::

    .venv/bin/python -m evals.benchmarks.attribute_speed [N] [N_LLM]

Prints the extractor's fit time, then per mode the mean and p95 milliseconds per product
(one product a call, as an interactive client sends them) and the mean attribute values
returned. Products come from ../shared/data/flipkart/dev.jsonl (read, never copied).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from agent.contract import Product
from agent.llm import create_backend
from agent.tagger import Tagger
from retrieval import (
    CandidateGenerator,
    SentenceTransformerEmbedder,
    build_index,
    packaged_examples,
)
from taxonomy import load_default_taxonomy

FLIPKART = Path(__file__).resolve().parents[3] / "shared" / "data" / "flipkart" / "dev.jsonl"


def _products(n: int) -> list[Product]:
    out = []
    with FLIPKART.open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            out.append(Product(id=r["id"], title=(r.get("title") or "-")[:1000],
                               description=(r.get("description") or "")[:2000]))
            if len(out) >= n:
                break
    return out


def _measure(tagger: Tagger, products: list[Product], selection: str) -> tuple[list[float], float]:
    times, values = [], 0
    for p in products:
        t = time.perf_counter()
        result = tagger.tag(p, attributes=selection)  # type: ignore[arg-type]
        times.append((time.perf_counter() - t) * 1000.0)
        values += sum(len(a.values) for a in result.attributes)
    return times, values / max(1, len(products))


def _line(name: str, times: list[float], values: float) -> str:
    p95 = statistics.quantiles(times, n=20)[-1] if len(times) >= 20 else max(times)
    return f"{name:<28} {statistics.fmean(times):8.1f} ms mean {p95:8.1f} ms p95 {values:5.2f} values/product"


def main(n: int = 200, n_llm: int = 30) -> None:
    # the service's default composition, built from the packages (evals does not import serve)
    snap = load_default_taxonomy()
    embedder = SentenceTransformerEmbedder()
    examples = packaged_examples()
    tagger = Tagger(CandidateGenerator(embedder, snap, build_index(embedder, examples)), None)
    products = _products(n)
    t = time.perf_counter()
    _ = tagger.extractor
    print(f"extractor fit on {len(examples)} examples: {time.perf_counter() - t:.2f} s")
    _measure(tagger, products, "on")  # warm-up: embeddings cached for both modes alike
    off = _measure(tagger, products, "off")
    on = _measure(tagger, products, "on")
    print(_line("attributes off", *off))
    print(_line("attributes on", *on))
    print(f"added by attributes: {statistics.fmean(on[0]) - statistics.fmean(off[0]):.1f} ms/product")
    if n_llm:
        llm = create_backend("embedded")
        with_llm = Tagger(tagger.generator, llm, config=replace(tagger.config, attribute_llm=True),
                          extractor=tagger.extractor)
        sub = products[:n_llm]
        base = _measure(tagger, sub, "on")
        llm_on = _measure(with_llm, sub, "on")
        print(_line("attributes on (same items)", *base))
        print(_line("attributes on + embedded LLM", *llm_on))
        print(f"added by the LLM step: {statistics.fmean(llm_on[0]) - statistics.fmean(base[0]):.1f} ms/product")
        llm.close()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*args)
