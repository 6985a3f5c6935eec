"""``tagsmith finetune``: teach the small LLM the customer's catalog (resumable)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from serve.cli._common import console, fail, settings

if TYPE_CHECKING:
    from retrieval import Example
    from taxonomy import Snapshot


def _load_examples(path: Path, snap: Snapshot) -> list[Example]:
    """Examples in any of the formats: the index's (``tags``, optionally ``attribute_values``
    / ``attribute_mentions``), the eval datasets' (``gold_tags``), or attribute records
    (``category`` + ``gold_attributes`` by name, as in WDC-PAVE)."""
    from agent.finetune.attributes import read_attribute_records
    from evals.dataset import load_dataset
    from retrieval import read_examples

    with path.open(encoding="utf-8") as fh:
        first = next((line for line in fh if line.strip()), "")
    try:
        head = json.loads(first) if first else {}
    except ValueError:
        head = {}
    if isinstance(head, dict) and "category" in head and isinstance(head.get("gold_attributes"), dict):
        return read_attribute_records(path, snap)
    if isinstance(head, dict) and "gold_tags" in head:
        return [it.example(snap) for it in load_dataset(path) if it.gold_tags]
    return list(read_examples(path))


def finetune(
    examples: Annotated[Path, typer.Option(help="tagged products (JSONL: tags or gold_tags)", exists=True, dir_okay=False)],
    taxonomy: Annotated[Path, typer.Option(help="the taxonomy the tags belong to", exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option(help="model directory to write (a matching run there is resumed)", file_okay=False)],
    task: Annotated[str, typer.Option(help="category (the tagging prompt) or attributes (the attribute step's prompt; "
                                           "examples with attribute values)")] = "category",
    base: Annotated[str, typer.Option(help="smollm2, gemma3-270m, or a Hugging Face model directory")] = "smollm2",
    method: Annotated[str, typer.Option(help="lora or full")] = "lora",
    epochs: Annotated[int, typer.Option(min=1)] = 1,
    learning_rate: Annotated[float | None, typer.Option(help="default 5e-4 (lora), 5e-5 (full)")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    grad_accum: Annotated[int, typer.Option(min=1, help="batches per optimiser step")] = 1,
    lora_r: Annotated[int, typer.Option(min=1)] = 16,
    lora_layers: Annotated[int | None, typer.Option(min=1, help="LoRA on the last N layers only (faster backward)")] = None,
    max_items: Annotated[int | None, typer.Option(min=10, help="train on a seeded sub-sample of N examples")] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="stop after N optimiser steps")] = None,
    val_fraction: Annotated[float, typer.Option(min=0.0, max=0.5)] = 0.05,
    max_val: Annotated[int, typer.Option(min=0)] = 200,
    lexical_folds: Annotated[int, typer.Option(min=0, help="cross-fitting folds of the lexical classifier (category) or of "
                                                           "the attribute extractor (attributes: at least 2); <2: off")] = 5,
    max_tokens: Annotated[int | None, typer.Option(min=16, help="leave out longer prompts (default 640 for category, "
                                                              "2048 for attributes)")] = None,
    dtype: Annotated[str, typer.Option(help="auto (bf16 for LoRA where the hardware has native bf16, else fp32), fp32 or bf16")] = "auto",
    seed: Annotated[int, typer.Option()] = 0,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="optimiser steps between checkpoints")] = 25,
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads (default: all cores)")] = None,
    taxonomy_format: Annotated[str, typer.Option(help="json, google, shopify, wdc-pave or flipkart")] = "json",
) -> None:
    """Fine-tune the LLM on leave-one-out tagging prompts (--task category; a model directory that
    TAGSMITH_LLM__MODEL=DIR serves) or attribute prompts (--task attributes: the attribute step's
    exact prompt, the gold values as the answer). Re-run the same command to resume after an interruption."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from agent.finetune import FinetuneJob, RunMismatchError, TrainConfig
    from agent.finetune import finetune as run_finetune
    from agent.finetune.run import ATTRIBUTE_MAX_TOKENS
    from agent.finetune.train import Progress as StepProgress
    from agent.llm import LLMError
    from agent.llm.manifest import ATTRIBUTES_TASK, TASKS
    from evals.dataset import DatasetError, file_sha256
    from retrieval import RetrievalError
    from serve.runtime import embedder_from_settings
    from taxonomy import TaxonomyError, load_taxonomy

    if task not in TASKS:
        fail(f"--task must be one of {', '.join(TASKS)}")
    if method not in ("lora", "full"):
        fail("--method must be lora or full")
    if dtype not in ("auto", "fp32", "bf16"):
        fail("--dtype must be auto, fp32 or bf16")
    from agent.finetune.hardware import native_bf16, resolve_dtype

    train_dtype, dtype_warning = resolve_dtype(dtype, method, native=native_bf16())  # type: ignore[arg-type]
    if dtype_warning:
        console.print(f"[yellow]warning:[/yellow] {dtype_warning}")
    s = settings()
    try:
        snap = load_taxonomy(taxonomy, taxonomy_format)  # type: ignore[arg-type]
        pool = _load_examples(examples, snap)
    except (DatasetError, TaxonomyError, RetrievalError, ValueError) as exc:
        fail(str(exc))
    lr = learning_rate if learning_rate is not None else (5e-4 if method == "lora" else 5e-5)
    if max_tokens is None:
        max_tokens = ATTRIBUTE_MAX_TOKENS if task == ATTRIBUTES_TASK else TrainConfig.max_tokens
    job = FinetuneJob(
        base=base,
        train=TrainConfig(
            method=method, epochs=epochs, learning_rate=lr, batch_size=batch_size,  # type: ignore[arg-type]
            grad_accum=grad_accum, lora_r=lora_r, lora_alpha=2 * lora_r, lora_layers=lora_layers,
            dtype=train_dtype, seed=seed, checkpoint_every=checkpoint_every,  # type: ignore[arg-type]
            max_steps=max_steps, max_tokens=max_tokens,
        ),
        max_items=max_items, val_fraction=val_fraction, max_val=max_val, lexical_folds=lexical_folds,
        task=task,
    )
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f} · {task.fields[tps]:.0f} tok/s"), TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=console) as bar:
            bar_task = bar.add_task("fine-tune", total=None, loss=float("nan"), tps=0.0)

            def progress(p: StepProgress) -> None:
                bar.update(bar_task, completed=p.step, total=p.total_steps, loss=p.loss, tps=p.tokens_per_s)

            manifest = run_finetune(
                pool, snap, embedder_from_settings(s), out, job,
                cache_dir=s.data_dir / "models", taxonomy_hash=file_sha256(taxonomy),
                threads=threads, log=lambda m: bar.console.print(m, highlight=False), progress=progress,
            )
    except (RunMismatchError, LLMError, RetrievalError, ValueError) as exc:
        fail(str(exc))
    last = (manifest.get("validation") or [{}])[-1]
    if task == ATTRIBUTES_TASK:
        console.print(
            f"model → {out}: on {last.get('val_n', 0)} held-out examples the model writes "
            f"{last.get('val_exact', float('nan')):.3f} of the answers exactly and ranks "
            f"{last.get('val_token_accuracy', float('nan')):.3f} of their tokens first (teacher-forced); "
            f"it answers the attribute step (manifest task 'attributes'), loaded with create_backend('embedded', "
            f"model='{out}')"
        )
        return
    console.print(
        f"model → {out}: validation accuracy {last.get('val_accuracy', float('nan')):.3f} "
        f"(retrieval vote {manifest['validation_vote_top1']:.3f}) on {last.get('val_n', 0)} held-out examples; "
        f"serve it with TAGSMITH_LLM__MODEL={out}"
    )
    blend = manifest.get("blend")
    if blend:
        console.print(f"blend weight {blend['llm_weight']} fitted on {blend['n']} held-out products "
                      f"(accuracy {blend['accuracy']:.3f}, vote alone {blend['vote_accuracy']:.3f})")


def finetune_blend(
    model: Annotated[Path, typer.Option(help="a tagsmith finetune model directory", exists=True, file_okay=False)],
    examples: Annotated[Path, typer.Option(help="tagged products (JSONL); those the model was trained on are skipped", exists=True, dir_okay=False)],
    taxonomy: Annotated[Path, typer.Option(help="the taxonomy the tags belong to", exists=True, dir_okay=False)],
    items: Annotated[int, typer.Option(min=30, help="held-out products to fit on")] = 400,
    seed: Annotated[int, typer.Option()] = 0,
    taxonomy_format: Annotated[str, typer.Option(help="json, google, shopify, wdc-pave or flipkart")] = "json",
) -> None:
    """Fit the fine-tuned model's weight in the blend with the retrieval vote on products it
    was not trained on, and store it in its manifest (the agent uses it unless
    TAGSMITH_TAGGING__LLM_WEIGHT is set). `tagsmith finetune` does this on its validation split."""
    from agent.finetune import fit_model_blend
    from agent.llm import LLMError
    from evals.dataset import DatasetError
    from retrieval import RetrievalError
    from serve.runtime import embedder_from_settings
    from taxonomy import TaxonomyError, load_taxonomy

    try:
        snap = load_taxonomy(taxonomy, taxonomy_format)  # type: ignore[arg-type]
        pool = _load_examples(examples, snap)
        blend = fit_model_blend(model, pool, snap, embedder_from_settings(settings()), n_items=items, seed=seed,
                                log=lambda m: console.print(m, highlight=False))
    except (DatasetError, TaxonomyError, RetrievalError, LLMError, ValueError) as exc:
        fail(str(exc))
    console.print(f"blend weight {blend['llm_weight']} → {model}/tagsmith-model.json "
                  f"(accuracy {blend['accuracy']:.3f}; vote alone {blend['vote_accuracy']:.3f}, "
                  f"LLM alone {blend['llm_accuracy']:.3f}; {blend['n']} products)")
