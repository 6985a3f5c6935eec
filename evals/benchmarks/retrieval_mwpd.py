"""Retrieval benchmark on MWPD: the pool is the example index, dev products are the queries.

Prints recall@k (k = 1, 5, 10, 20) of the gold leaf among the ranked candidates, the
neighbour-label baseline, encoding throughput and index build time, naming the embedder
and the FAISS backend. Deterministic (exact search, fixed sample for throughput).

    .venv/bin/python -m evals.benchmarks.retrieval_mwpd                # default configuration
    .venv/bin/python -m evals.benchmarks.retrieval_mwpd --sweep        # + vote-weighting grid
    .venv/bin/python -m evals.benchmarks.retrieval_mwpd --kind hnsw    # approximate index

Embeddings are cached under ``--cache-dir`` (default ``.cache/embeddings``), so only the
first run pays for encoding the 13k texts; throughput is always measured uncached.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
from collections.abc import Sequence
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
    ExampleIndex,
    LexicalClassifier,
    SentenceTransformerEmbedder,
    TaxonomyIndex,
)
from retrieval.embedder import Vectors
from taxonomy import Snapshot, load_taxonomy

REPO = Path(__file__).resolve().parents[2]
MWPD = REPO.parent / "shared" / "data" / "mwpd"
KS = (1, 5, 10, 20)
THROUGHPUT_SAMPLE = 512


def load_records(path: Path, *, breadcrumb: bool) -> list[Example]:
    out = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            crumb = (r.get("extra") or {}).get("category_text") or "" if breadcrumb else ""
            out.append(
                Example(r["id"], r["title"], r.get("description") or "", (r["gold_leaf"],), {}, crumb)
            )
    return out


def recall(ranked: Sequence[Sequence[str]], gold: Sequence[str], ks: Sequence[int] = KS) -> dict[int, float]:
    return {k: float(np.mean([g in r[:k] for r, g in zip(ranked, gold, strict=True)])) for k in ks}


def neighbour_label_baseline(index: ExampleIndex, queries: Vectors, gold: Sequence[str]) -> dict[int, float]:
    """Gold leaf among the labels of the top-k neighbours (no voting): the brief's baseline."""
    hits = index.search(queries, max(KS))
    ranked = []
    for row in hits:
        ranked.append([h.example.tags[0] for h in row])
    return {k: float(np.mean([g in r[:k] for r, g in zip(ranked, gold, strict=True)])) for k in KS}


def evaluate(
    gen: CandidateGenerator, queries: Vectors, gold: Sequence[str], margins: Vectors | None = None
) -> dict[int, float]:
    results = gen.retrieve_vectors(queries, margins=margins)
    return recall([[c.id for c in r.candidates] for r in results], gold)


def fmt(r: dict[int, float]) -> str:
    return "  ".join(f"R@{k}={100 * v:5.1f}" for k, v in r.items())


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="sentence-transformers directory (default: packaged MiniLM)")
    ap.add_argument("--max-seq-length", type=int, default=None, help="tokens (default: the embedder's)")
    ap.add_argument("--quantize", choices=["none", "int8"], default="none")
    ap.add_argument("--max-chars", type=int, default=None, help="product text budget (default: retrieval's)")
    ap.add_argument("--no-breadcrumb", action="store_true", help="leave extra.category_text out of the text")
    ap.add_argument("--kind", choices=["flat", "hnsw"], default="flat")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--cache-dir", type=Path, default=REPO / ".cache" / "embeddings")
    ap.add_argument("--sweep", action="store_true", help="also print a grid over the vote parameters")
    ap.add_argument("--speed", action="store_true", help="only compare encoding speed of the embedder variants")
    ap.add_argument("--json", type=Path, default=None, help="write the results here too")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if not (MWPD / "pool.jsonl").is_file():
        raise SystemExit(f"MWPD data not found under {MWPD}")
    if args.speed:
        return compare_speed(args)
    snap: Snapshot = load_taxonomy(MWPD / "taxonomy.json", "json")
    pool = load_records(MWPD / "pool.jsonl", breadcrumb=not args.no_breadcrumb)
    dev = load_records(MWPD / "dev.jsonl", breadcrumb=not args.no_breadcrumb)
    gold = [d.tags[0] for d in dev]

    kwargs: dict[str, Any] = {"quantize": args.quantize}
    if args.max_seq_length is not None:
        kwargs["max_seq_length"] = args.max_seq_length
    plain = SentenceTransformerEmbedder(args.model, **kwargs)
    base = CandidateConfig()
    config = base if args.max_chars is None else replace(base, max_chars=args.max_chars)
    print(f"embedder: {plain.name} (dim {plain.dim}, device {plain.device}, {args.threads} threads)")
    print(f"backend: faiss {args.kind}; torch {torch.__version__}; {platform.processor() or platform.machine()}")
    print(f"text: max_chars={config.max_chars}, breadcrumb={'no' if args.no_breadcrumb else 'yes'}")

    # throughput, uncached, on a fixed sample of dev texts
    sample = [d.text(config.max_chars) for d in dev[:THROUGHPUT_SAMPLE]]
    plain.encode(sample[:16])  # warm-up
    t0 = time.perf_counter()
    plain.encode(sample)
    throughput = len(sample) / (time.perf_counter() - t0)
    print(f"encoding throughput: {throughput:.1f} items/s ({len(sample)} dev texts, uncached)")

    cache = EmbeddingCache(args.cache_dir)
    embedder = CachedEmbedder(plain, cache)
    t0 = time.perf_counter()
    pool_vecs = embedder.encode([p.text(config.max_chars) for p in pool])
    dev_vecs = embedder.encode([d.text(config.max_chars) for d in dev])
    print(f"embedded pool+dev in {time.perf_counter() - t0:.1f}s (cache hits {embedder.hits}, misses {embedder.misses})")

    t0 = time.perf_counter()
    index = ExampleIndex(plain.dim, kind=args.kind)
    index.upsert(pool, pool_vecs)
    build_s = time.perf_counter() - t0
    print(f"index build ({args.kind}, {len(index)} examples): {build_s:.2f}s")

    results: dict[str, Any] = {
        "embedder": plain.name,
        "backend": f"faiss-{args.kind}",
        "throughput_items_s": throughput,
        "index_build_s": build_s,
    }
    if args.kind != "flat":
        exact = ExampleIndex(plain.dim, kind="flat")
        exact.upsert(pool, pool_vecs)
        k = 10
        a = exact.search(dev_vecs, k)
        b = index.search(dev_vecs, k)
        overlap = np.mean([len({h.id for h in x} & {h.id for h in y}) / k for x, y in zip(a, b, strict=True)])
        results["ann_recall_at_10"] = float(overlap)
        print(f"{args.kind} recall@10 vs exact search: {100 * overlap:.2f}%")

    baseline = neighbour_label_baseline(index, dev_vecs, gold)
    print(f"baseline (top-k neighbours' labels):   {fmt(baseline)}")
    tax_index = TaxonomyIndex(snap, embedder)
    gen = CandidateGenerator(embedder, snap, index, config=config, taxonomy_index=tax_index)
    t0 = time.perf_counter()
    main_recall = evaluate(gen, dev_vecs, gold)
    rank_s = time.perf_counter() - t0
    print(f"candidates {_describe(config)}: {fmt(main_recall)}  ({1000 * rank_s / len(dev):.2f} ms/query ranking)")
    empty = CandidateGenerator(embedder, snap, None, config=config, taxonomy_index=tax_index)
    print(f"taxonomy search only (empty pool):     {fmt(evaluate(empty, dev_vecs, gold))}")
    t0 = time.perf_counter()
    lexical = LexicalClassifier.fit(pool)
    fit_s = time.perf_counter() - t0
    fused = CandidateGenerator(embedder, snap, index, config=config, taxonomy_index=tax_index, lexical=lexical)
    t0 = time.perf_counter()
    margins = lexical.decision(dev) if lexical is not None else None
    score_ms = 1000 * (time.perf_counter() - t0) / len(dev)
    hybrid_recall = evaluate(fused, dev_vecs, gold, margins)
    print(
        f"candidates + lexical classifier (hybrid default): {fmt(hybrid_recall)}  "
        f"(fit {fit_s:.1f}s on {len(pool)} examples, {score_ms:.2f} ms/query scoring)"
    )
    results.update(baseline=baseline, recall=main_recall, hybrid_recall=hybrid_recall, config=_describe(config))

    if args.sweep:
        grid: dict[str, list[float]] = {
            "neighbours": [10, 25, 50],
            "power": [1.0, 4.0, 8.0, 16.0, 24.0],
            "broad_weight": [0.0, 0.5, 1.0],
            "rollup": [0.0, 0.05, 0.3],
            "taxonomy_weight": [0.0, 0.3, 0.5],
        }
        print("\nsweep (one parameter changed from the default at a time, then a small grid):")
        for name, values in grid.items():
            for value in values:
                change: dict[str, Any] = {name: value}
                cfg = replace(config, **change)
                r = evaluate(CandidateGenerator(embedder, snap, index, config=cfg, taxonomy_index=tax_index), dev_vecs, gold)
                print(f"  {name}={value:<5}: {fmt(r)}")
        print("  grid:")
        for nb, pw, bw, tw in itertools.product([25, 50], [8.0, 16.0], [0.3, 0.5], [0.2, 0.3]):
            cfg = replace(config, neighbours=nb, power=pw, broad_weight=bw, taxonomy_weight=tw)
            r = evaluate(CandidateGenerator(embedder, snap, index, config=cfg, taxonomy_index=tax_index), dev_vecs, gold)
            print(f"  nb={nb} p={pw} broad_w={bw} tax={tw}: {fmt(r)}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    cache.close()
    return results


def compare_speed(args: argparse.Namespace) -> dict[str, Any]:
    """Items/s of each embedder variant on the same texts, measured back to back (the
    machine is shared: compare rows of one run, not across runs)."""
    dev = load_records(MWPD / "dev.jsonl", breadcrumb=not args.no_breadcrumb)
    texts = [d.text() for d in dev[:THROUGHPUT_SAMPLE]]
    out: dict[str, Any] = {}
    for seq, quantize in [(256, "none"), (128, "none"), (256, "int8"), (128, "int8")]:
        emb = SentenceTransformerEmbedder(args.model, max_seq_length=seq, quantize=quantize)  # type: ignore[arg-type]
        emb.encode(texts[:16])
        t0 = time.perf_counter()
        emb.encode(texts)
        out[emb.name] = rate = len(texts) / (time.perf_counter() - t0)
        print(f"{emb.name:45s} {rate:7.1f} items/s", flush=True)
    cache = EmbeddingCache(args.cache_dir)
    cached = CachedEmbedder(SentenceTransformerEmbedder(args.model), cache)
    cached.encode(texts)  # fills the cache when cold
    t0 = time.perf_counter()
    cached.encode(texts)
    out["cache-hit"] = rate = len(texts) / (time.perf_counter() - t0)
    print(f"{'warm embedding cache (sqlite)':45s} {rate:7.1f} items/s")
    return out


def _describe(cfg: CandidateConfig) -> str:
    return (
        f"(nb={cfg.neighbours}, p={cfg.power}, broad p={cfg.broad_power} w={cfg.broad_weight}, "
        f"rollup={cfg.rollup}, tax={cfg.taxonomy_weight}, tax_k={cfg.taxonomy_k})"
    )


if __name__ == "__main__":
    main()
