"""``tagsmith eval run --task attributes``: the eval runner's mechanics for attribute tagging.

Same run directory as the category runner (:mod:`evals.runner`): ``run.json`` (its key adds
``"task": "attributes"``, so a category run's directory is never resumed as an attribute
run), ``predictions.jsonl`` (deterministic, appended a batch at a time, a torn last line
truncated and the run resumed after the last complete item), ``timings.jsonl`` and
``metrics.json`` (:func:`evals.attributes.scoring.compute_attribute_metrics`).

A prediction line::

    {"id", "title", "category", "category_given", "gold_category", "score_category",
     "attributes_asked": [names] | null,
     "attributes": {"<attribute name>": "<value>" | [values]},          # what is scored
     "attributes_as_written": {"<attribute name>": "<text>" | [texts]},  # for --extracted
     "confidence": {"<attribute name>": first value's confidence},
     "gold_attributes": {name: [values]}, "gold_attributes_extracted": {…} | null,
     "gold_unknown": [gold attribute names the taxonomy lacks],
     "n_values", "off_schema", "needs_review", "result": the tagger's output | null}

``attributes`` is what ``../shared/tools/score_wdc_pave.py`` reads, so the file can be fed
to it as it is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.contract import AttributeSelection, AttributeTag
from agent.llm import LLMBackend
from agent.tagger import LLM_PIPELINES, Tagger, TaggerConfig
from evals.attributes.dataset import (
    AttrItem,
    attribute_names,
    check_attr_items,
    load_attr_dataset,
    load_attr_examples,
)
from evals.attributes.scoring import compute_attribute_metrics
from evals.attributes.solvers import (
    BASELINES,
    DICT_BASELINE,
    AttrAnswer,
    AttrRequest,
    AttrSolver,
    DictionaryBaseline,
    NeighbourVoteBaseline,
    TaggerSolver,
)
from evals.dataset import DatasetError, file_sha256
from evals.runner import (
    EvalConfig,
    RunSummary,
    build_generator,
    prepare_out,
    read_timing_rows,
    resume_point,
    run_key,
    write_batches,
    write_metrics,
)
from retrieval import CachedEmbedder, Example
from taxonomy import Snapshot, load_taxonomy

TASK = "attributes"
TAGGER_PIPELINES = ("hybrid", "knn", "zero-shot", "rag", "cascade")
ATTR_PIPELINES = (*TAGGER_PIPELINES, *BASELINES)
#: bump when what a prediction line holds changes: it is part of the run key
RECORD_VERSION = 1


def _run_key(cfg: EvalConfig, hashes: dict[str, str], model: str | None, embedder: str | None) -> dict[str, Any]:
    """The category runner's key, plus the task, the record version and the embedder."""
    return {
        **run_key(cfg, hashes, model),
        "task": TASK,
        "records": RECORD_VERSION,
        "embedder": embedder if cfg.pipeline != DICT_BASELINE else None,
    }


def _values(tag: AttributeTag, *, written: bool) -> str | list[str]:
    vals = [(v.evidence.text or v.value) if written else v.value for v in tag.values]
    return vals[0] if len(vals) == 1 else vals


def off_schema(snap: Snapshot, category: str | None, tags: Sequence[AttributeTag]) -> int:
    """Values naming an attribute the category lacks, or a closed value not allowed. An
    answer without a category (the dictionary baseline on data that gives none) is held to
    the taxonomy's active attributes."""
    if category is not None and category not in snap:
        return sum(len(t.values) for t in tags)
    pool = snap.attributes_for(category) if category is not None else tuple(snap.attributes.values())
    attrs = {a.id: a for a in pool if a.active}
    bad = 0
    for tag in tags:
        attr = attrs.get(tag.attribute)
        allowed = {v.id for v in attr.active_values()} if attr is not None and attr.closed else None
        for v in tag.values:
            if attr is None or (allowed is not None and v.value_id not in allowed):
                bad += 1
    return bad


def _record(item: AttrItem, answer: AttrAnswer, snap: Snapshot) -> dict[str, Any]:
    asked = set(item.attributes_asked) if item.attributes_asked is not None else None
    tags = [t for t in answer.attributes if asked is None or t.name in asked]
    gold_category = item.gold_category(snap)
    gold = item.gold_attributes
    unknown: list[str] = []
    if item.attributes_asked is None and gold_category is not None and gold_category in snap:
        # scored on what the taxonomy can tag: gold attributes it lacks are reported, not scored
        known = attribute_names(snap, gold_category)
        unknown = sorted(k for k in gold if " ".join(k.casefold().split()) not in known)
        gold = {k: v for k, v in gold.items() if k not in unknown}
    return {
        "id": item.id,
        "title": item.title[:200],
        "category": answer.category,
        "category_given": item.category is not None,
        "category_confidence": answer.category_confidence,
        "gold_category": gold_category,
        "score_category": item.breakdown_category(snap),
        "attributes_asked": item.attributes_asked,
        "attributes": {t.name: _values(t, written=False) for t in tags},
        "attributes_as_written": {t.name: _values(t, written=True) for t in tags},
        "confidence": {t.name: t.values[0].confidence for t in tags},
        "gold_attributes": gold,
        "gold_attributes_extracted": item.gold_attributes_extracted,
        "gold_unknown": unknown,
        "n_values": sum(len(t.values) for t in tags),
        "off_schema": off_schema(snap, answer.category, answer.attributes),
        "needs_review": answer.needs_review,
        "result": answer.result,
    }


def _request(item: AttrItem, snap: Snapshot) -> AttrRequest:
    selection: AttributeSelection = "on"
    if item.attributes_asked is not None:
        if item.category is not None:
            selection = item.asked_ids(snap, item.category)
        else:
            selection = list(item.attributes_asked)  # names: matched in the chosen category
    return AttrRequest(product=item.product(), category=item.category, selection=selection)


def build_attr_solver(
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
) -> AttrSolver:
    if cfg.pipeline == DICT_BASELINE:
        if step is not None:
            step(f"building the dictionary of {len(examples):,} examples' values")
        return DictionaryBaseline(snap, examples)
    generator = build_generator(snap, examples, examples_hash, embedder=embedder, cache_dir=cache_dir, step=step)
    if cfg.pipeline in BASELINES:
        return NeighbourVoteBaseline(generator)
    tagger_cfg = TaggerConfig(pipeline=cfg.pipeline, review_threshold=review_threshold, **cfg.tagger)  # type: ignore[arg-type]
    backend = None
    if cfg.pipeline in LLM_PIPELINES or tagger_cfg.attribute_llm:
        if step is not None:
            step("loading the LLM")
        backend = llm()
    tagger = Tagger(generator, backend, config=tagger_cfg)
    if step is not None:
        step(f"fitting the attribute extractor on {len(examples):,} examples")
    _ = tagger.extractor  # fitted here, not inside the first batch's timing
    return TaggerSolver(tagger)


def run_attribute_eval(
    cfg: EvalConfig,
    *,
    embedder: Callable[[], CachedEmbedder],
    llm: Callable[[], LLMBackend],
    cache_dir: Path,
    llm_model: str | None = None,
    embedder_name: str | None = None,
    review_threshold: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    step: Callable[[str], None] | None = None,
) -> RunSummary:
    """Tag the attributes of every item not yet in ``cfg.out``, then score all of them.
    ``embedder_name`` (e.g. the settings' backend and model) goes into the run key, so a run
    with another embedder is never resumed into this one."""
    if cfg.pipeline not in ATTR_PIPELINES:
        raise DatasetError(f"unknown pipeline {cfg.pipeline!r} for --task {TASK}: use one of {', '.join(ATTR_PIPELINES)}")
    snap = load_taxonomy(cfg.taxonomy, cfg.taxonomy_format)  # type: ignore[arg-type]
    items = load_attr_dataset(cfg.dataset, limit=cfg.limit)
    check_attr_items(items, snap, str(cfg.dataset))
    hashes = {"dataset": file_sha256(cfg.dataset), "taxonomy": file_sha256(cfg.taxonomy)}
    examples: list[Example] = []
    examples_hash = ""
    if cfg.examples is not None:
        examples = load_attr_examples(cfg.examples, snap, exclude={it.id for it in items})
        hashes["examples"] = file_sha256(cfg.examples)
        # the examples carry attribute ids of this taxonomy: the index cache is keyed by both
        examples_hash = hashlib.sha256(
            f"{TASK}/{RECORD_VERSION}:{hashes['examples']}:{hashes['taxonomy']}".encode()
        ).hexdigest()
    elif cfg.pipeline in BASELINES:
        raise DatasetError(f"the {cfg.pipeline} baseline needs --examples (it learns from their values)")
    model = llm_model if cfg.pipeline in LLM_PIPELINES or cfg.tagger.get("attribute_llm") else None
    prepare_out(cfg, _run_key(cfg, hashes, model, embedder_name))

    done = resume_point(cfg, [it.id for it in items], progress)
    todo = items[done:]
    if todo:
        solver = build_attr_solver(
            cfg, snap, examples, examples_hash, embedder=embedder, llm=llm, cache_dir=cache_dir,
            review_threshold=review_threshold, step=step,
        )
        if step is not None:
            step(f"eval {TASK} {cfg.pipeline}")
        write_batches(
            cfg, todo, lambda batch: solver.solve([_request(it, snap) for it in batch]),
            latency_ms=lambda a: a.latency_ms, record=lambda it, a: _record(it, a, snap),
            done=done, total=len(items), progress=progress,
        )
    metrics = score_attribute_run(cfg.out, n_boot=cfg.n_boot, seed=cfg.seed)
    return RunSummary(cfg.out, len(items), done, metrics)


def read_attribute_predictions(out: Path) -> list[dict[str, Any]]:
    """The records of a run directory, with ``latency_ms`` from ``timings.jsonl``."""
    timing = read_timing_rows(out)
    records = []
    with (out / "predictions.jsonl").open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{out / 'predictions.jsonl'}: line {lineno}: {exc}") from exc
            if not isinstance(rec, dict) or "id" not in rec or not isinstance(rec.get("attributes"), dict):
                raise ValueError(f"{out / 'predictions.jsonl'}: line {lineno} is not an attribute prediction")
            rec["latency_ms"] = float(timing.get(rec["id"], {}).get("latency_ms", 0.0))
            records.append(rec)
    return records


def score_attribute_run(out: Path, *, n_boot: int, seed: int) -> dict[str, Any]:
    """Metrics of a finished attribute run directory, written atomically to ``metrics.json``."""
    records = read_attribute_predictions(out)
    metrics = compute_attribute_metrics(records, n_boot=n_boot, seed=seed)
    return write_metrics(out, metrics, len(records), read_timing_rows(out))
