"""Training throughput of the fine-tuning step on real tagging prompts (docs/finetune.md).

    .venv/bin/python -m evals.benchmarks.finetune_speed RUN_DIR [--steps 3] [--batch-size 8]

RUN_DIR is a ``tagsmith finetune`` output directory (its ``dataset.jsonl`` supplies the
prompts). Each variant loads the base model afresh, runs one warm-up step and ``--steps``
timed optimiser steps, and prints prompt tokens per second (the number that decides the
wall time of a fine-tune: tokens/s ÷ mean prompt length = items/s).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from agent.finetune.run import _items_from_file, resolve_base
from agent.finetune.train import TrainConfig, Trainer

VARIANTS: dict[str, TrainConfig] = {
    "lora-all-fp32": TrainConfig(method="lora"),
    "lora-last8-fp32": TrainConfig(method="lora", lora_layers=8),
    "lora-last4-fp32": TrainConfig(method="lora", lora_layers=4),
    "lora-all-bf16": TrainConfig(method="lora", dtype="bf16"),
    "lora-last8-bf16": TrainConfig(method="lora", lora_layers=8, dtype="bf16"),
    "lora-last4-bf16": TrainConfig(method="lora", lora_layers=4, dtype="bf16"),
    "full-fp32": TrainConfig(method="full", learning_rate=5e-5),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--base", default="smollm2")
    args = parser.parse_args()
    train, _ = _items_from_file(args.run_dir / "dataset.jsonl")
    base_dir, _ = resolve_base(args.base, Path.home() / ".cache" / "tagsmith-finetune")
    for name in args.variants.split(","):
        cfg = replace(VARIANTS[name], batch_size=args.batch_size, checkpoint_every=10**9)
        trainer = Trainer(base_dir, args.run_dir / "speed-tmp", train, [], cfg, threads=args.threads)
        batches = [trainer.train[i : i + cfg.batch_size] for i in range(0, len(trainer.train), cfg.batch_size)]
        timings = []
        tokens = []
        for step in range(args.steps + 1):
            batch = batches[step % len(batches)]
            t0 = time.perf_counter()
            loss, n_tokens = trainer._answer_loss(batch)
            loss.backward()
            trainer.optimizer.step()
            trainer.optimizer.zero_grad(set_to_none=True)
            if step:  # the first step warms up allocators and kernels
                timings.append(time.perf_counter() - t0)
                tokens.append(n_tokens)
        seconds = sum(timings)
        print(json.dumps({
            "variant": name, "batch_size": cfg.batch_size, "steps": args.steps,
            "s_per_step": round(seconds / len(timings), 2),
            "tokens_per_s": round(sum(tokens) / seconds, 1),
            "mean_tokens_per_item": round(sum(tokens) / (len(timings) * cfg.batch_size), 1),
            "trainable_params": sum(p.numel() for p in trainer.trainable.values()),
        }), flush=True)
        del trainer


if __name__ == "__main__":
    main()
