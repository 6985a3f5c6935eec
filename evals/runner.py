"""The eval runner: dataset + solver (a tagger pipeline or a baseline) + scorer (metrics).

``run_eval`` writes, under the run directory:

- ``run.json``: the configuration, the content hashes of the inputs and the versions used;
  a directory holding a run of another configuration is refused, a matching one resumed;
- ``predictions.jsonl``: one record per item in dataset order, deterministic for a given
  configuration (no timings in it, so two runs with the same seed are byte-identical);
- ``timings.jsonl``: per item latency and the batch wall time it shared;
- ``metrics.json``: :func:`evals.metrics.compute_metrics` plus throughput and the config.

Predictions are appended a batch at a time and fsynced; a crash leaves at most a partial
last line, which the next run truncates before resuming after the last complete item.
The example index (and its lexical classifier) is cached under ``cache_dir`` keyed by the
examples' content hash and the embedder, so repeated runs only embed new examples.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, TypeVar

from agent.contract import Product, TagResult
from agent.llm import LLMBackend
from agent.llm.manifest import MANIFEST_FILE
from agent.tagger import LLM_PIPELINES, Tagger, TaggerConfig
from evals.baselines import NAME as TFIDF_SVM
from evals.baselines import TfidfSvmBaseline
from evals.dataset import (
    DatasetError,
    DatasetItem,
    check_against_taxonomy,
    file_sha256,
    load_dataset,
)
from retrieval import (
    CachedEmbedder,
    CandidateGenerator,
    Example,
    ExampleIndex,
    IndexStore,
    LexicalClassifier,
    LexicalConfig,
    NoIndexError,
    TaxonomyIndex,
    build_index,
)
from retrieval.calibration import DEFAULT_REVIEW_THRESHOLD, Calibration
from retrieval.durable import append_lines, atomic_write_json, resume_keys
from retrieval.publish import publish_index
from taxonomy import Snapshot, load_taxonomy

PIPELINES = ("hybrid", "knn", "zero-shot", "rag", "cascade", TFIDF_SVM)
RUN_FORMAT = "tagsmith-eval-run/1"


class RunMismatchError(DatasetError):
    """The output directory holds a run of another configuration."""


class Solver(Protocol):
    def tag_many(self, products: Sequence[Product]) -> list[TagResult]: ...


@dataclass(frozen=True)
class EvalConfig:
    dataset: Path
    taxonomy: Path
    out: Path
    pipeline: str
    examples: Path | None = None
    taxonomy_format: str = "json"
    limit: int | None = None
    seed: int = 0
    batch_size: int = 32
    n_boot: int = 1000
    name: str | None = None
    tagger: dict[str, Any] = field(default_factory=dict)  # TaggerConfig overrides
    task: str = "categories"  # or "attributes" (evals.attributes.runner)


@dataclass(frozen=True)
class RunSummary:
    out: Path
    n: int
    resumed: int  # items found already done
    metrics: dict[str, Any]


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("tagsmith", "faiss-cpu", "sentence-transformers", "scikit-learn", "llama_cpp_python", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def run_key(cfg: EvalConfig, hashes: dict[str, str], model: str | None) -> dict[str, Any]:
    """What must be equal for a directory to be resumed (and predictions to be identical)."""
    return {
        "format": RUN_FORMAT,
        "pipeline": cfg.pipeline,
        "limit": cfg.limit,
        "seed": cfg.seed,
        "inputs": hashes,
        "tagger": cfg.tagger,
        "llm_model": model,
        # a fine-tuned model's manifest carries its prompt shape and blend weight: another
        # manifest is another configuration, even in the same directory
        **_manifest_key(model),
    }


def _manifest_key(model: str | None) -> dict[str, str]:
    path = Path(model) / MANIFEST_FILE if model else None
    if path is None or not path.is_file():
        return {}
    return {"llm_manifest_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def prepare_out(cfg: EvalConfig, key: dict[str, Any]) -> None:
    cfg.out.mkdir(parents=True, exist_ok=True)
    run_file = cfg.out / "run.json"
    if run_file.exists():
        try:
            previous = json.loads(run_file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise RunMismatchError(f"{run_file} is damaged ({exc}): use another --out") from exc
        old_key = previous.get("key")
        if old_key != key:
            old = old_key if isinstance(old_key, dict) else {}
            differ = sorted(k for k in {*old, *key} if old.get(k) != key.get(k))
            raise RunMismatchError(
                f"{cfg.out} holds a run of another configuration (differs in: {', '.join(differ)}): "
                "use another --out, or delete it to start over"
            )
        return
    doc = {"name": cfg.name or cfg.out.name, "pipeline": cfg.pipeline, "key": key,
           "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
           "versions": _versions(), "started_at": time.time()}
    atomic_write_json(run_file, doc)


def cached_index(
    embedder: CachedEmbedder,
    examples: Sequence[Example],
    examples_hash: str,
    cache_dir: Path,
    step: Callable[[str], None] | None = None,
) -> tuple[ExampleIndex, LexicalClassifier | None]:
    """The example index + lexical classifier for these examples, built once and reused;
    ``step(description)`` announces the long steps (embedding, training) when they run."""
    index, lexical, _ = cached_bundle(embedder, examples, examples_hash, cache_dir, step=step)
    return index, lexical


def cached_bundle(
    embedder: CachedEmbedder,
    examples: Sequence[Example],
    examples_hash: str,
    cache_dir: Path,
    *,
    snapshot: Snapshot | None = None,
    step: Callable[[str], None] | None = None,
) -> tuple[ExampleIndex, LexicalClassifier | None, Calibration | None]:
    """:func:`cached_index` plus, with a ``snapshot``, the calibration fitted on the pool
    (as every publication in the service fits it), computed once and cached with it."""
    key = hashlib.sha256(
        json.dumps([examples_hash, embedder.name, asdict(LexicalConfig())], sort_keys=True).encode()
    ).hexdigest()[:24]
    store = IndexStore(cache_dir / "indexes" / key)
    try:
        index, lexical, manifest = store.load_bundle(embedder=embedder.name, dim=embedder.dim)
        calibration = manifest.calibration
        if snapshot is None or calibration is not None:
            return index, lexical, calibration
    except NoIndexError:
        if step is not None:
            step(f"embedding {len(examples):,} examples")
        index = build_index(embedder, examples, chunk=max(1, len(examples)))  # the embedder chunks (and reports)
        if step is not None:
            step(f"training the lexical classifier on {len(examples):,} examples")
        lexical = LexicalClassifier.fit(examples)
        if snapshot is None:
            store.publish(index, embedder=embedder.name, lexical=lexical, extra={"examples_sha256": examples_hash})
            return index, lexical, None
    if step is not None:
        step(f"calibrating on held-out examples of the {len(index):,}")
    _, calibration = publish_index(
        store, index, embedder=embedder, snapshot=snapshot, lexical=lexical,
        extra={"examples_sha256": examples_hash},
    )
    return index, lexical, calibration


def _record(item: DatasetItem, result: TagResult, snap: Snapshot) -> dict[str, Any]:
    top = result.tags[0].id if result.tags else None
    llm = result.evidence.llm
    return {
        "id": item.id,
        "title": item.title[:200],
        "gold_tags": item.gold_tags,
        "pred_tags": list(snap.path(top)) if top is not None and top in snap else ([top] if top else []),
        "confidence": result.tags[0].confidence if result.tags else None,
        "needs_review": result.needs_review,
        "off_taxonomy": sum(1 for t in result.tags if not snap.is_active(t.id)),
        "llm_tokens": llm.prompt_tokens + llm.completion_tokens,
        "fallback_used": llm.fallback_used,
        "gold_attributes": [a.model_dump() for a in item.gold_attributes] if item.gold_attributes else None,
        "pred_attributes": None,
        "result": result.model_dump(mode="json", exclude={"timings_ms"}),
    }


def build_generator(
    snap: Snapshot,
    examples: Sequence[Example],
    examples_hash: str,
    *,
    embedder: Callable[[], CachedEmbedder],
    cache_dir: Path,
    step: Callable[[str], None] | None = None,
    calibrate: bool = False,
) -> CandidateGenerator:
    """The candidate generator a run's tagger retrieves with: the examples' index and lexical
    classifier (cached, :func:`cached_index`) and the taxonomy's node index. ``calibrate``:
    with the calibration fitted on the examples pool, as a publication in the service fits
    it (cached with the index; the eval runner's taggers use it)."""
    emb = embedder()
    index, lexical, calibration = (
        cached_bundle(emb, examples, examples_hash, cache_dir, snapshot=snap if calibrate else None, step=step)
        if examples else (None, None, None)
    )
    # examples and taxonomy nodes come from the cache; the items are embedded afresh (the
    # uncached inner embedder) so that items_per_second is the same on every run
    if step is not None:
        step(f"embedding the taxonomy's {len(snap.active_leaf_ids):,} node texts")
    taxonomy_index = TaxonomyIndex(snap, emb)
    return CandidateGenerator(
        emb.inner, snap, index, lexical=lexical, taxonomy_index=taxonomy_index,
        calibration=calibration if calibrate else None,
    )


def build_solver(
    cfg: EvalConfig,
    snap: Snapshot,
    examples: Sequence[Example],
    examples_hash: str,
    *,
    embedder: Callable[[], CachedEmbedder],
    llm: Callable[[], LLMBackend],
    cache_dir: Path,
    review_threshold: float | None = None,
    step: Callable[[str], None] | None = None,
) -> Solver:
    """``review_threshold``: None: the one fitted on the pool (the service's default)."""
    if cfg.pipeline == TFIDF_SVM:
        if step is not None:
            step(f"training the {TFIDF_SVM} baseline on {len(examples):,} examples")
        baseline_threshold = DEFAULT_REVIEW_THRESHOLD if review_threshold is None else review_threshold
        return TfidfSvmBaseline(snap, examples, review_threshold=baseline_threshold)
    generator = build_generator(
        snap, examples, examples_hash, embedder=embedder, cache_dir=cache_dir, step=step, calibrate=True
    )
    tagger_cfg = TaggerConfig(pipeline=cfg.pipeline, review_threshold=review_threshold, **cfg.tagger)  # type: ignore[arg-type]
    backend = None
    if cfg.pipeline in LLM_PIPELINES:
        if step is not None:
            step("loading the LLM")
        backend = llm()
    return Tagger(generator, backend, config=tagger_cfg)


def run_eval(
    cfg: EvalConfig,
    *,
    embedder: Callable[[], CachedEmbedder],
    llm: Callable[[], LLMBackend],
    cache_dir: Path,
    llm_model: str | None = None,
    review_threshold: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    step: Callable[[str], None] | None = None,
) -> RunSummary:
    """Tag every item not yet in ``cfg.out``, then score all of them. ``embedder`` and
    ``llm`` are factories so that a baseline run never loads a model it does not use.
    ``step(description)`` announces each long preparation step and then the tagging,
    whose ``progress(done, total)`` follows."""
    if cfg.task == "attributes":
        from evals.attributes.runner import run_attribute_eval

        return run_attribute_eval(cfg, embedder=embedder, llm=llm, cache_dir=cache_dir, llm_model=llm_model,
                                  review_threshold=review_threshold, progress=progress, step=step)
    if cfg.task != "categories":
        raise DatasetError(f"unknown task {cfg.task!r}: use categories or attributes")
    if cfg.pipeline not in PIPELINES:
        raise DatasetError(f"unknown pipeline {cfg.pipeline!r}: use one of {', '.join(PIPELINES)}")
    snap = load_taxonomy(cfg.taxonomy, cfg.taxonomy_format)  # type: ignore[arg-type]
    items = load_dataset(cfg.dataset, limit=cfg.limit)
    check_against_taxonomy(items, snap, str(cfg.dataset))
    hashes = {"dataset": file_sha256(cfg.dataset), "taxonomy": file_sha256(cfg.taxonomy)}
    examples: list[Example] = []
    if cfg.examples is not None:
        pool = load_dataset(cfg.examples)
        eval_ids = {it.id for it in items}
        # an item must never retrieve itself: drop eval items from the pool by id
        examples = [it.example(snap) for it in pool if it.id not in eval_ids and it.gold_tags]
        hashes["examples"] = file_sha256(cfg.examples)
    model = llm_model if cfg.pipeline in LLM_PIPELINES else None
    prepare_out(cfg, run_key(cfg, hashes, model))

    done = resume_point(cfg, [it.id for it in items], progress)
    todo = items[done:]
    if todo:
        solver = build_solver(
            cfg, snap, examples, hashes.get("examples", ""), embedder=embedder, llm=llm,
            cache_dir=cache_dir, review_threshold=review_threshold, step=step,
        )
        if step is not None:
            step(f"eval {cfg.pipeline}")
        write_batches(
            cfg, todo, lambda batch: solver.tag_many([it.product() for it in batch]),
            latency_ms=lambda r: r.timings_ms.total, record=lambda it, r: _record(it, r, snap),
            done=done, total=len(items), progress=progress,
        )
    from evals.metrics import compute_metrics

    metrics = score_run(cfg.out, snap, n_boot=cfg.n_boot, seed=cfg.seed, compute=compute_metrics)
    return RunSummary(cfg.out, len(items), done, metrics)


class _Item(Protocol):
    @property
    def id(self) -> str: ...


ItemT = TypeVar("ItemT", bound=_Item)
AnswerT = TypeVar("AnswerT")


def resume_point(cfg: EvalConfig, ids: Sequence[str], progress: Callable[[int, int], None] | None = None) -> int:
    """How many of the items (``ids``, in dataset order) ``cfg.out`` already holds: a torn last
    line of ``predictions.jsonl`` or ``timings.jsonl`` is truncated first; predictions of
    other items, or in another order, are refused."""
    predictions, timings = cfg.out / "predictions.jsonl", cfg.out / "timings.jsonl"
    done = resume_keys(predictions)
    resume_keys(timings)
    if done != list(ids[: len(done)]):
        raise RunMismatchError(f"{predictions} does not match the dataset order: delete {cfg.out} to start over")
    if progress is not None:
        progress(len(done), len(ids))
    return len(done)


def write_batches(
    cfg: EvalConfig,
    todo: Sequence[ItemT],
    solve: Callable[[Sequence[ItemT]], Sequence[AnswerT]],
    *,
    latency_ms: Callable[[AnswerT], float],
    record: Callable[[ItemT, AnswerT], dict[str, Any]],
    done: int,
    total: int,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Solve ``todo`` ``cfg.batch_size`` items at a time (timed), appending each batch's
    timings and then its prediction records (``record``) to the run directory."""
    predictions, timings = cfg.out / "predictions.jsonl", cfg.out / "timings.jsonl"
    for start in range(0, len(todo), cfg.batch_size):
        batch = todo[start : start + cfg.batch_size]
        t0 = time.perf_counter()
        answers = solve(batch)
        wall_ms = (time.perf_counter() - t0) * 1000.0 / len(batch)
        # timings first: a crash between the two leaves a timing for an item that is
        # re-tagged (and re-timed) on resume, never a prediction without a timing
        append_lines(timings, [json.dumps({"id": it.id, "latency_ms": latency_ms(a), "wall_ms": wall_ms}) + "\n"
                               for it, a in zip(batch, answers, strict=True)])
        append_lines(predictions, [json.dumps(record(it, a), ensure_ascii=False, sort_keys=True) + "\n"
                                   for it, a in zip(batch, answers, strict=True)])
        if progress is not None:
            progress(done + start + len(batch), total)


def score_run(
    out: Path, snap: Snapshot, *, n_boot: int, seed: int, compute: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    """Metrics of a finished run directory, written atomically to ``metrics.json``."""
    timing = read_timing_rows(out)
    records = []
    with (out / "predictions.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                rec["latency_ms"] = float(timing.get(rec["id"], {}).get("latency_ms", 0.0))
                records.append(rec)
    return write_metrics(out, compute(records, snap, n_boot=n_boot, seed=seed), len(records), timing)


def read_timing_rows(out: Path) -> dict[str, dict[str, Any]]:
    """The rows of ``out/timings.jsonl`` by item id (the last one of an item re-timed on
    resume wins); empty when there is no such file."""
    timing: dict[str, dict[str, Any]] = {}
    tfile = out / "timings.jsonl"
    if tfile.exists():
        with tfile.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    row = json.loads(line)
                    timing[row["id"]] = row
    return timing


def write_metrics(out: Path, metrics: dict[str, Any], n_records: int, timing: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``metrics`` plus throughput (from the batches' wall time) and the run's configuration
    and versions, written atomically to ``out/metrics.json``."""
    wall_s = sum(float(t.get("wall_ms", 0.0)) for t in timing.values()) / 1000.0
    metrics["items_per_second"] = round(n_records / wall_s, 3) if wall_s > 0 else None
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    metrics["pipeline"] = run["pipeline"]
    metrics["config"] = run["config"]
    metrics["versions"] = run["versions"]
    atomic_write_json(out / "metrics.json", metrics)
    return metrics
