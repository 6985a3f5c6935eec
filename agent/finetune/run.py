"""One fine-tuning run end to end: base model, leave-one-out dataset, training, model directory.

The output directory is the model: merged weights in the Hugging Face layout (the
transformers backend and vLLM load it as is), ``adapter/`` (LoRA only, for vLLM's LoRA
serving), and the manifest ``tagsmith-model.json``. While training it also holds
``run.json`` (what must match to resume), ``dataset.jsonl`` (the prompts, built once),
``checkpoints/`` and ``train.log``.

Two tasks: ``category`` (the tagging prompt, :mod:`agent.finetune.data`) and ``attributes``
(the attribute step's prompt, :mod:`agent.finetune.attributes`). The manifest records the
task and the prompt profile the model was trained on.
"""

from __future__ import annotations

import json
import platform
import random
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.finetune.attributes import (
    AttributeTrainItem,
    agent_profile,
    attribute_stats_json,
    build_attribute_items,
    labelled,
)
from agent.finetune.blend import MIN_ITEMS, fit_blend
from agent.finetune.data import (
    TrainItem,
    build_items,
    data_hash,
    duplicate_key,
    stats_json,
)
from agent.finetune.train import AnyItem, Progress, TrainConfig, Trainer, config_json
from agent.llm.base import ModelNotFoundError
from agent.llm.manifest import (
    ATTRIBUTES_TASK,
    CATEGORY_TASK,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    AttributePromptProfile,
    PromptProfile,
    profile_json,
    profile_of,
    read_manifest,
    task_of,
)
from retrieval import Embedder, Example
from retrieval.durable import atomic_path, atomic_write_json
from taxonomy import Snapshot

#: the leaner prompt fine-tuning trains on (and the agent then uses with the model): a
#: one-line system prompt (``tag.ft1``; the model learns the task from the data, not from
#: instructions), 2 examples instead of 4, shorter texts: ~300 SmolLM2 tokens instead of
#: ~470 (tag.v1 with the default profile), because training cost is linear in prompt tokens
FINETUNE_PROFILE = PromptProfile(
    max_candidates=8, max_examples=2, max_product_chars=240, max_example_chars=100,
    max_label_chars=120, version="tag.ft1",
)
RUN_FORMAT = "tagsmith-finetune-run/1"
#: attribute prompts run to ~1,450 SmolLM2 tokens on WDC-PAVE (20 attributes, their options
#: and hints) plus ~150 answer tokens: the default cut (640) would drop them all
ATTRIBUTE_MAX_TOKENS = 2048


class RunMismatchError(ValueError):
    """The output directory holds a run with other inputs or settings."""


@dataclass(frozen=True)
class FinetuneJob:
    base: str = "smollm2"  # a packaged base name, or a Hugging Face model directory
    profile: PromptProfile = FINETUNE_PROFILE
    train: TrainConfig = field(default_factory=TrainConfig)
    max_items: int | None = None  # train on a seeded sub-sample of this many examples
    val_fraction: float = 0.05
    max_val: int = 200
    lexical_folds: int = 5
    task: str = CATEGORY_TASK
    """``category`` or ``attributes``; ``lexical_folds`` then cross-fits the attribute
    extractor (at least 2)."""
    attribute_profile: AttributePromptProfile = field(default_factory=agent_profile)
    """The attribute prompt to train on (the agent's, by default; the attributes task only)."""


def job_json(job: FinetuneJob) -> dict[str, Any]:
    """The job as the run key and manifest record it (a category job as before tasks existed,
    so that its runs still resume)."""
    out = {**asdict(job), "profile": profile_json(job.profile), "train": config_json(job.train)}
    del out["task"], out["attribute_profile"]
    if job.task == ATTRIBUTES_TASK:
        out.update(task=job.task, profile=profile_json(job.attribute_profile))
    return out


def resolve_base(base: str, cache_dir: Path) -> tuple[Path, dict[str, Any]]:
    """A Hugging Face directory for ``base`` and what identifies it (name, source hash)."""
    path = Path(base).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        from agent.llm.hf_export import read_manifest
        from retrieval.durable import sha256_file

        exported = read_manifest(path) or {}
        weights = sorted(path.glob("*.safetensors"))
        digest = exported.get("source", {}).get("sha256") or (sha256_file(weights[0]) if weights else "")
        return path, {"name": str(path), "sha256": digest}
    from agent.llm.hf_export import MODELS, export_hf
    from agent.llm.hf_export import read_manifest as read_export

    if base not in MODELS:
        raise ModelNotFoundError(f"unknown base model {base!r}: use {', '.join(sorted(MODELS))} or a directory")
    directory = export_hf(cache_dir / f"base-{base}", model=base)
    source = (read_export(directory) or {}).get("source", {})
    return directory, {"name": base, "file": source.get("file"), "sha256": source.get("sha256")}


def split(
    examples: Sequence[Example], job: FinetuneJob, snap: Snapshot | None = None
) -> tuple[list[int], list[int]]:
    """Seeded sub-sample, then a validation slice; exact duplicates of a validation item
    are dropped from training (they would leak its answer)."""
    order = list(range(len(examples)))
    random.Random(job.train.seed).shuffle(order)
    if job.task == ATTRIBUTES_TASK:  # products with attribute values only: the rest have no answer
        keep = set(labelled(examples, snap)) if snap is not None else set(order)
        order = [i for i in order if i in keep]
    if job.max_items is not None:
        order = order[: job.max_items]
    n_val = min(job.max_val, round(len(order) * job.val_fraction))
    val = sorted(order[:n_val])
    val_keys = {duplicate_key(examples[i]) for i in val}
    train = sorted(i for i in order[n_val:] if duplicate_key(examples[i]) not in val_keys)
    return train, val


def _write_json(path: Path, data: Any) -> None:
    atomic_write_json(path, data, ensure_ascii=False)


def _items_to_file(path: Path, train: Sequence[AnyItem], val: Sequence[AnyItem]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for part, items in (("train", train), ("val", val)):
            for it in items:
                fh.write(json.dumps({"split": part, **asdict(it)}, ensure_ascii=False) + "\n")


def _items_from_file(path: Path) -> tuple[list[AnyItem], list[AnyItem]]:
    train: list[AnyItem] = []
    val: list[AnyItem] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            item: AnyItem
            if "answer" in row:
                item = AttributeTrainItem(
                    row["id"], row["system"], row["user"], row["answer"], row["category"],
                    tuple(row["attributes"]), int(row.get("filled", 0)),
                )
                (train if row["split"] == "train" else val).append(item)
                continue
            item = TrainItem(
                row["id"], row["system"], row["user"], row["letter"], tuple(row["letters"]),
                row["gold"], row.get("vote_letter", ""), tuple(row.get("vote", ())),
            )
            (train if row["split"] == "train" else val).append(item)
    return train, val


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def finetune(
    examples: Sequence[Example],
    snap: Snapshot,
    embedder: Embedder,
    out: Path,
    job: FinetuneJob,
    *,
    cache_dir: Path,
    taxonomy_hash: str = "",
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> dict[str, Any]:
    """Train (resuming a matching run in ``out``) and write the model directory; returns
    the manifest."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    logfile = out / "train.log"

    def say(message: str) -> None:
        with logfile.open("a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {message}\n")
        if log is not None:
            log(message)

    base_dir, base_info = resolve_base(job.base, cache_dir)
    key = {
        "format": RUN_FORMAT,
        "base": base_info,
        "data_sha256": data_hash(examples),
        "taxonomy": {"version": snap.version, "sha256": taxonomy_hash},
        "embedder": embedder.name,
        "job": job_json(job),
    }
    run_file = out / "run.json"
    if run_file.exists():
        if json.loads(run_file.read_text(encoding="utf-8")) != key:
            raise RunMismatchError(
                f"{out} holds a fine-tuning run with other inputs or settings: use another --out"
            )
    else:
        if any(p.name != "train.log" for p in out.iterdir()):
            raise RunMismatchError(f"{out} is not empty and holds no fine-tuning run: use another --out")
        _write_json(run_file, key)

    dataset_file = out / "dataset.jsonl"
    stats_file = out / "dataset-stats.json"
    if dataset_file.exists() and stats_file.exists():
        train_items, val_items = _items_from_file(dataset_file)
        stats = json.loads(stats_file.read_text(encoding="utf-8"))
        say(f"dataset reused: {len(train_items)} train, {len(val_items)} validation prompts")
    else:
        t0 = time.perf_counter()
        train_idx, val_idx = split(examples, job, snap)
        items: Sequence[AnyItem]
        if job.task == ATTRIBUTES_TASK:
            items, attr_stats = build_attribute_items(
                examples, snap, embedder, profile=job.attribute_profile, select=train_idx + val_idx,
                folds=job.lexical_folds, progress=say, seed=job.train.seed,
            )
            built_json = attribute_stats_json(attr_stats)
        else:
            items, built = build_items(
                examples, snap, embedder, profile=job.profile, select=train_idx + val_idx,
                folds=job.lexical_folds, progress=say,
            )
            built_json = stats_json(built)
        if not items:
            raise ValueError("no training prompt could be built from these examples"
                             + (" (none carries attribute values)" if job.task == ATTRIBUTES_TASK else ""))
        val_ids = {examples[i].id for i in val_idx}
        train_items = [it for it in items if it.id not in val_ids]
        val_items = [it for it in items if it.id in val_ids]
        stats = {**built_json, "build_seconds": round(time.perf_counter() - t0, 1),
                 "train_items": len(train_items), "val_items": len(val_items)}
        _items_to_file(dataset_file, train_items, val_items)
        _write_json(stats_file, stats)
        say(f"dataset built: {json.dumps(stats)}")

    trainer = Trainer(base_dir, out, train_items, val_items, job.train, threads=threads, log=say)
    if not trainer.train:
        raise ValueError(f"every training prompt is longer than max_tokens={job.train.max_tokens} "
                         f"({trainer.dropped_long} left out): raise it")
    t_train = time.perf_counter()
    history = trainer.run(progress)
    train_seconds = time.perf_counter() - t_train
    trainer.save_model(out)
    dropped_long, total_steps, device = trainer.dropped_long, trainer.total_steps, trainer.device
    del trainer  # free the training copy: the fit loads the merged model the way the agent will
    task_fields: dict[str, Any]
    if job.task == ATTRIBUTES_TASK:
        task_fields = {"task": ATTRIBUTES_TASK, "prompt": profile_json(job.attribute_profile)}
    else:
        cat_val = [it for it in val_items if isinstance(it, TrainItem)]
        # the retrieval vote's accuracy on the same validation prompts: the bar the model must clear
        vote_top1 = sum(1 for it in cat_val if it.letter == it.vote_letter) / max(1, len(cat_val))
        task_fields = {
            "prompt": profile_json(job.profile),
            "validation_vote_top1": vote_top1,
            "blend": _fit_on(out, cat_val, "the validation split", say),
        }
    manifest = {
        "format": MANIFEST_FORMAT,
        "kind": "fine-tuned",
        "base": base_info,
        "data": {"sha256": key["data_sha256"], "examples": len(examples), **stats},
        "taxonomy": key["taxonomy"],
        "embedder": embedder.name,
        **{k: v for k, v in task_fields.items() if k != "blend" and k != "validation_vote_top1"},
        "hyperparameters": {**config_json(job.train), "max_items": job.max_items,
                            "val_fraction": job.val_fraction, "max_val": job.max_val,
                            "lexical_folds": job.lexical_folds},
        "validation": history,
        **{k: v for k, v in task_fields.items() if k in ("validation_vote_top1", "blend")},
        "dropped_long_prompts": dropped_long,
        "steps": total_steps,
        "timing": {"train_seconds_this_process": round(train_seconds, 1),
                   "total_seconds_this_process": round(time.perf_counter() - started, 1),
                   "peak_rss_mb": round(peak_rss_mb(), 1), "threads": threads,
                   "device": device, "machine": platform.machine()},
        "versions": _versions(),
    }
    _write_json(out / MANIFEST_FILE, manifest)
    say(f"model written to {out}")
    return manifest


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    result = {"python": platform.python_version()}
    for dist in ("torch", "transformers", "peft"):
        try:
            result[dist] = version(dist)
        except PackageNotFoundError:
            result[dist] = "missing"
    return result


def _fit_on(
    model_dir: Path, items: Sequence[TrainItem], source: str, say: Callable[[str], None]
) -> dict[str, Any] | None:
    from agent.llm.transformers_backend import TransformersBackend

    say(f"fitting the blend weight on {len(items)} products of {source}")
    backend = TransformersBackend(model_dir)
    try:
        fit = fit_blend(backend, items)
    finally:
        backend.close()
    if fit is None:
        say(f"too few products to fit the blend weight (< {MIN_ITEMS}): the agent's default applies")
        return None
    say(f"blend weight {fit['llm_weight']}: accuracy {fit['accuracy']} "
        f"(vote alone {fit['vote_accuracy']}, LLM alone {fit['llm_accuracy']}, n {fit['n']})")
    return {**fit, "source": source}


def fit_model_blend(
    model_dir: Path,
    examples: Sequence[Example],
    snap: Snapshot,
    embedder: Embedder,
    *,
    n_items: int = 400,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """(Re)fit the blend weight of a fine-tuned model on up to ``n_items`` of ``examples``
    that it was not trained on (leave-one-out prompts, as in training), and store it in the
    manifest (atomically). For models whose validation split was too small, or to refit on
    more products. Returns the ``blend`` entry; ValueError when nothing is left to fit on."""
    say = log or (lambda _m: None)
    manifest = read_manifest(model_dir)
    if task_of(manifest) != CATEGORY_TASK:
        raise ValueError(f"{model_dir} is fine-tuned for {task_of(manifest)}: the blend weight is the category step's")
    profile = profile_of(manifest)
    if manifest is None or profile is None:
        raise ValueError(f"{model_dir} has no fine-tuning manifest ({MANIFEST_FILE})")
    trained: set[str] = set()
    dataset_file = model_dir / "dataset.jsonl"
    if dataset_file.exists():
        trained = {it.id for it in _items_from_file(dataset_file)[0]}
    unseen = [i for i, ex in enumerate(examples) if ex.id not in trained]
    if not unseen:
        raise ValueError("every example was used in training: give products the model has not seen")
    chosen = sorted(random.Random(seed).sample(unseen, min(n_items, len(unseen))))
    folds = int((manifest.get("hyperparameters") or {}).get("lexical_folds", 5))
    items, _ = build_items(examples, snap, embedder, profile=profile, select=chosen, folds=folds, progress=say)
    blend = _fit_on(model_dir, items, f"{len(chosen)} examples not used in training (seed {seed})", say)
    if blend is None:
        raise ValueError(f"only {len(items)} usable products: the fit needs at least {MIN_ITEMS}")
    manifest["blend"] = blend
    _write_json(model_dir / MANIFEST_FILE, manifest)
    return blend

