"""Time a whole fine-tuning run on a prepared dataset, on whatever device torch sees (GPU figures).

    python -m evals.benchmarks.finetune_pool RUN_DIR --out OUT [--base smollm2] [--batch-size 8]
        [--lora-layers N] [--dtype auto|fp32|bf16] [--epochs 1] [--report FILE]

RUN_DIR is a ``tagsmith finetune`` directory whose ``dataset.jsonl`` was built already (the
leave-one-out prompts: building them needs the embedder, the index and the lexical classifier,
i.e. the CPU stack, so it is done once where that stack is installed and the prompts travel).
The training itself is the real one (``agent.finetune.train.Trainer``, the configuration
``tagsmith finetune`` builds from the same options), with checkpoints, validation after the
epoch and the merged model written to OUT. Prints one JSON line: device, items, steps, seconds,
items/s, prompt tokens/s, peak GPU memory, peak RSS, validation accuracy.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from agent.finetune.hardware import native_bf16, resolve_dtype
from agent.finetune.run import _items_from_file, peak_rss_mb, resolve_base
from agent.finetune.train import Progress, TrainConfig, Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--base", default="smollm2")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lora-layers", type=int, default=None)
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--report", type=Path, default=None)
    args = parser.parse_args()

    import torch

    dtype, warning = resolve_dtype(args.dtype, "lora", native=native_bf16())
    if warning:
        print(f"warning: {warning}", flush=True)
    train, val = _items_from_file(args.run_dir / "dataset.jsonl")
    t0 = time.perf_counter()
    base_dir, base_info = resolve_base(args.base, args.out.parent / "base-cache")
    export_s = time.perf_counter() - t0
    cfg = TrainConfig(method="lora", epochs=args.epochs, learning_rate=args.learning_rate,
                      batch_size=args.batch_size, lora_layers=args.lora_layers, dtype=dtype,
                      checkpoint_every=10**6)
    trainer = Trainer(base_dir, args.out, train, val, cfg, log=lambda m: print(m, flush=True))
    last: list[Progress] = []

    def progress(p: Progress) -> None:
        if not last or p.step - last[0].step >= 100 or p.step == p.total_steps:
            print(f"step {p.step}/{p.total_steps} loss {p.loss:.3f} {p.tokens_per_s:.0f} tok/s", flush=True)
            last[:] = [p]

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t1 = time.perf_counter()
    history = trainer.run(progress)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    train_s = time.perf_counter() - t1
    trainer.save_model(args.out)
    prompt_tokens = sum(len(e.ids) for e in trainer.train) * args.epochs
    report = {
        "device": trainer.device,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "machine": platform.machine(), "torch": torch.__version__,
        "base": base_info.get("name"), "dtype": dtype, "batch_size": args.batch_size,
        "lora_layers": args.lora_layers, "epochs": args.epochs,
        "train_items": len(trainer.train), "val_items": len(val), "dropped_long": trainer.dropped_long,
        "steps": trainer.total_steps, "export_s": round(export_s, 1), "train_s": round(train_s, 1),
        "items_per_s": round(len(trainer.train) * args.epochs / train_s, 1),
        "prompt_tokens_per_s": round(prompt_tokens / train_s, 1),
        "peak_gpu_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None,
        "peak_gpu_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2) if torch.cuda.is_available() else None,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "validation": history[-1] if history else None,
    }
    line = json.dumps(report)
    print(line, flush=True)
    if args.report is not None:
        args.report.write_text(line + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
