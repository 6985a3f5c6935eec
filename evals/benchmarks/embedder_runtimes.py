"""Embedding throughput for bulk tagging: MiniLM on torch / ONNX Runtime / OpenVINO, float32
and int8, several batch sizes; and MWPD dev WAF1 of the default ``hybrid`` pipeline with each.

    .venv/bin/python -m evals.benchmarks.embedder_runtimes --speed [--texts 256 --rounds 3]
    .venv/bin/python -m evals.benchmarks.embedder_runtimes --quality torch onnx-int8 ...

``--speed``: items/s of each variant on the same MWPD dev texts, measured in interleaved
rounds (variant A, B, C…, then again) and reported as the median round, so that load from
other jobs on a shared machine hits every variant alike; plus the cosine of each variant's
vectors to torch float32's. ``--quality``: ``tagsmith eval run``'s machinery (the pool as
examples, all 3,000 dev items, WAF1 with its bootstrap CI) with the embedder replaced: the
pool is embedded by the variant (a float32 runtime shares torch's name, hence its cached
pool vectors: exactly what bulk tagging against an index built with torch does) and dev
items afresh by the variant. The ONNX/OpenVINO exports are made locally from the packaged
weights (``retrieval.onnx_runtime``), under ``--export-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evals.benchmarks.retrieval_mwpd import MWPD, load_records
from evals.runner import EvalConfig, run_eval
from retrieval import CachedEmbedder, EmbeddingCache, SentenceTransformerEmbedder
from retrieval.embedder import Quantize
from retrieval.onnx_runtime import Runtime

REPO = Path(__file__).resolve().parents[2]
VARIANTS: dict[str, tuple[Runtime, Quantize]] = {
    "torch": ("torch", "none"),
    "torch-int8": ("torch", "int8"),
    "onnx": ("onnx", "none"),
    "onnx-int8": ("onnx", "int8"),
    "openvino": ("openvino", "none"),
    "openvino-int8": ("openvino", "int8"),
}


def make(variant: str, *, batch_size: int, threads: int, export_dir: Path) -> SentenceTransformerEmbedder:
    runtime, quantize = VARIANTS[variant]
    return SentenceTransformerEmbedder(
        batch_size=batch_size, quantize=quantize, runtime=runtime, num_threads=threads, export_dir=export_dir
    )


def speed(args: argparse.Namespace) -> dict[str, Any]:
    texts = [d.text() for d in load_records(MWPD / "dev.jsonl", breadcrumb=True)[: args.texts]]
    embedders = {v: make(v, batch_size=args.batch_sizes[0], threads=args.threads, export_dir=args.export_dir)
                 for v in args.variants}
    reference = embedders["torch"].encode(texts) if "torch" in embedders else None
    rates: dict[str, list[float]] = {}
    cosine: dict[str, float] = {}
    for name, emb in embedders.items():
        vectors = emb.encode(texts[:32])  # warm-up
        if reference is not None:
            cosine[name] = float(np.mean(np.sum(emb.encode(texts) * reference, axis=1)))
    for _round in range(args.rounds):
        for bs in args.batch_sizes:
            for name, emb in embedders.items():
                emb.batch_size = bs
                t0 = time.perf_counter()
                vectors = emb.encode(texts)
                rate = len(texts) / (time.perf_counter() - t0)
                rates.setdefault(f"{name} bs={bs}", []).append(rate)
                assert vectors.shape[0] == len(texts)
        print(f"round {_round + 1}/{args.rounds} done, load {os.getloadavg()[0]:.1f}", flush=True)
    out = {key: round(statistics.median(r), 1) for key, r in rates.items()}
    for key, rate in out.items():
        name = key.split(" ")[0]
        print(f"{key:24s} {rate:7.1f} items/s  (rounds: {', '.join(f'{r:.1f}' for r in rates[key])}); "
              f"mean cosine to torch fp32 {cosine.get(name, float('nan')):.5f}")
    return {"items_per_s": out, "cosine_to_torch": cosine, "texts": len(texts), "threads": args.threads}


def quality(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cache = EmbeddingCache(args.cache_dir)
    for variant in args.quality:
        def embedder(v: str = variant) -> CachedEmbedder:
            return CachedEmbedder(make(v, batch_size=64, threads=args.threads, export_dir=args.export_dir), cache)

        cfg = EvalConfig(
            dataset=MWPD / "dev.jsonl", taxonomy=MWPD / "taxonomy.json", examples=MWPD / "pool.jsonl",
            out=args.runs_dir / f"mwpd-dev-hybrid-{variant}", pipeline="hybrid", limit=args.limit, seed=0,
        )
        t0 = time.perf_counter()
        summary = run_eval(
            cfg, embedder=embedder, llm=_no_llm, cache_dir=args.runs_dir / "cache",
            step=lambda s: print(f"  {s}", flush=True),
        )
        m = summary.metrics
        out[variant] = {"waf1": m["waf1"], "ci95": m.get("ci95", {}).get("waf1"), "n": summary.n,
                        "wall_s": round(time.perf_counter() - t0, 1)}
        print(f"{variant:14s} WAF1 {m['waf1']:.2f} {out[variant]['ci95']} n={summary.n} "
              f"({out[variant]['wall_s']} s, load {os.getloadavg()[0]:.1f})", flush=True)
    cache.close()
    return out


def quick_quality(args: argparse.Namespace) -> dict[str, Any]:
    """WAF1 of ``hybrid`` on the first ``--limit`` dev items with each variant, lighter than
    ``--quality``: no calibration fit (it moves confidences, not the top tag WAF1 scores) and
    the same candidate machinery as the eval runner (pool minus dev ids, lexical classifier on
    the pool, taxonomy index); every text through the embedding cache."""
    from sklearn.metrics import f1_score

    from agent.tagger import Tagger, TaggerConfig
    from evals.dataset import load_dataset
    from retrieval import CandidateGenerator, LexicalClassifier, TaxonomyIndex, build_index
    from taxonomy import load_taxonomy

    snap = load_taxonomy(MWPD / "taxonomy.json", "json")
    items = load_dataset(MWPD / "dev.jsonl", limit=args.limit)
    ids = {it.id for it in items}
    examples = [it.example(snap) for it in load_dataset(MWPD / "pool.jsonl") if it.id not in ids and it.gold_tags]
    t0 = time.perf_counter()
    lexical = LexicalClassifier.fit(examples)
    print(f"lexical classifier fitted in {time.perf_counter() - t0:.0f} s", flush=True)
    cache = EmbeddingCache(args.cache_dir)
    out: dict[str, Any] = {}
    for variant in args.quick_quality:
        emb = CachedEmbedder(make(variant, batch_size=64, threads=args.threads, export_dir=args.export_dir), cache)
        t0 = time.perf_counter()
        index = build_index(emb, examples, chunk=len(examples))
        generator = CandidateGenerator(emb, snap, index, lexical=lexical, taxonomy_index=TaxonomyIndex(snap, emb))
        results = Tagger(generator, None, config=TaggerConfig(pipeline="hybrid")).tag_many(
            [it.product() for it in items]
        )
        levels = []
        for level in range(3):
            gold = [it.gold_tags[level] if len(it.gold_tags) > level else "" for it in items]
            pred = []
            for r in results:
                path = [*snap.ancestors(r.tags[0].id), r.tags[0].id] if r.tags else []
                pred.append(path[level] if len(path) > level else "")
            levels.append(100 * f1_score(gold, pred, average="weighted", zero_division=0))
        out[variant] = {"waf1": round(float(np.mean(levels)), 2), "levels": [round(x, 2) for x in levels],
                        "n": len(items), "wall_s": round(time.perf_counter() - t0, 1)}
        print(f"{variant:14s} WAF1 {out[variant]['waf1']:.2f} (L1/L2/L3 {out[variant]['levels']}) n={len(items)} "
              f"({out[variant]['wall_s']} s, load {os.getloadavg()[0]:.1f})", flush=True)
    cache.close()
    return out


def _no_llm() -> Any:
    raise AssertionError("the hybrid pipeline uses no LLM")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[16, 64, 128])
    ap.add_argument("--texts", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quality", nargs="*", default=[], choices=list(VARIANTS))
    ap.add_argument("--quick-quality", nargs="*", default=[], choices=list(VARIANTS))
    ap.add_argument("--limit", type=int, default=None, help="first N dev items (default: all 3,000)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--export-dir", type=Path, default=REPO / ".cache" / "onnx")
    ap.add_argument("--cache-dir", type=Path, default=REPO / ".cache" / "embeddings")
    ap.add_argument("--runs-dir", type=Path, default=REPO / ".cache" / "runs-embedder")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    results: dict[str, Any] = {}
    if args.speed:
        results["speed"] = speed(args)
    if args.quality:
        results["quality"] = quality(args)
    if args.quick_quality:
        results["quick_quality"] = quick_quality(args)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
