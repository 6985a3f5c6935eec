"""``tagsmith eval run``: tag a labelled dataset with one pipeline and score it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from serve.cli._common import StepProgress, console, fail, settings

if TYPE_CHECKING:
    from retrieval import CachedEmbedder

PIPELINE_HELP = (
    "hybrid, knn, zero-shot, rag, cascade, or a baseline: tfidf-svm (--task categories), dict-baseline or "
    "neighbour-vote (--task attributes) (default: the service's pipeline)"
)
TASKS = ("categories", "attributes")
TAXONOMY_FORMATS = ("auto", "json", "google", "shopify", "wdc-pave", "flipkart")


def infer_taxonomy_format(path: Path) -> str:
    """The import format of a taxonomy file, read from its content: WDC-PAVE's schema
    (``categories``), Shopify's upstream file (``verticals``), Flipkart's tree with observed
    attributes (``nodes`` + ``attributes`` rows without ids), our JSON (``nodes``), else the
    Google text format."""
    import json

    from taxonomy.formats import read_text

    text = read_text(path)
    if not text.lstrip().startswith("{"):
        return "google"
    try:
        data = json.loads(text)
    except ValueError:
        return "json"  # the JSON reader names the error
    if not isinstance(data, dict):
        return "json"
    if isinstance(data.get("categories"), dict) and "nodes" not in data:
        return "wdc-pave"
    if isinstance(data.get("verticals"), list):
        return "shopify"
    attrs = data.get("attributes")
    if isinstance(data.get("nodes"), list) and isinstance(attrs, list) and attrs and all(
        isinstance(a, dict) and "id" not in a and "name" in a for a in attrs
    ):
        return "flipkart"
    return "json"


def run(
    dataset: Annotated[Path, typer.Option(help="labelled JSONL to evaluate", exists=True, dir_okay=False)],
    taxonomy: Annotated[Path, typer.Option(help="the taxonomy the gold tags belong to", exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option(help="run directory (resumed when it holds the same run)", file_okay=False)],
    examples: Annotated[
        Path | None,
        typer.Option(help="labelled JSONL to retrieve from / train on (same format)", exists=True, dir_okay=False),
    ] = None,
    pipeline: Annotated[str | None, typer.Option(help=PIPELINE_HELP)] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="evaluate the first N items only")] = None,
    seed: Annotated[int, typer.Option(help="seed of the bootstrap and of any sampling")] = 0,
    taxonomy_format: Annotated[
        str, typer.Option(help="auto (read from the file), json, google, shopify, wdc-pave or flipkart")
    ] = "auto",
    task: Annotated[
        str,
        typer.Option(help="categories (the category, WAF1) or attributes (the category's attribute values, "
                     "WDC-PAVE P/R/F1)"),
    ] = "categories",
    batch_size: Annotated[int, typer.Option(min=1, max=1024, help="items tagged per batch")] = 32,
    bootstrap: Annotated[int, typer.Option(min=0, help="bootstrap resamples for the 95% CIs")] = 1000,
    name: Annotated[str | None, typer.Option(help="run name shown in reports (default: the directory)")] = None,
    model: Annotated[
        Path | None,
        typer.Option(help="LLM pipelines: a model directory or GGUF file run in-process (e.g. a fine-tuned model)"),
    ] = None,
    llm_mode: Annotated[
        str, typer.Option(help="LLM pipelines: score (probabilities over the candidates), generate, or auto")
    ] = "auto",
    attribute_llm: Annotated[
        bool, typer.Option(help="--task attributes: also ask the LLM (one call per product) to confirm or "
                           "add attribute values")
    ] = False,
    llm_weight: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="LLM pipelines: weight of the LLM against the vote "
                     "(default: TAGSMITH_TAGGING__LLM_WEIGHT, else the model's fitted weight, else 0.3)"),
    ] = None,
) -> None:
    """Tag every dataset item, write predictions.jsonl and metrics.json (resumable)."""
    from agent.llm import LLMError
    from agent.tagger import LLM_PIPELINES
    from evals.dataset import DatasetError
    from evals.runner import EvalConfig, run_eval
    from retrieval import RetrievalError
    from serve.backends import backend_from_settings
    from serve.runtime import embedder_from_settings
    from taxonomy import TaxonomyError

    cfg_settings = settings()
    if task not in TASKS:
        fail(f"--task must be one of {', '.join(TASKS)}")
    if taxonomy_format not in TAXONOMY_FORMATS:
        fail(f"--taxonomy-format must be one of {', '.join(TAXONOMY_FORMATS)}")
    if taxonomy_format == "auto":
        try:
            taxonomy_format = infer_taxonomy_format(taxonomy)
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read the taxonomy {taxonomy}: {exc}")
    if llm_mode not in ("auto", "generate", "score"):
        fail("--llm-mode must be auto, generate or score")
    run_pipeline = pipeline or cfg_settings.tagging.pipeline
    llm_only = f"applies to the LLM pipelines ({', '.join(sorted(LLM_PIPELINES))}), not {run_pipeline}"
    if model is not None and run_pipeline not in LLM_PIPELINES and not attribute_llm:
        # it would never be loaded: refuse rather than run (and label) a run without it
        fail(f"--model {llm_only}: add --pipeline rag (or another LLM pipeline)")
    if model is not None:
        if not model.exists():
            fail(f"model not found: {model}")
        llm_settings = cfg_settings.llm.model_copy(update={"backend": "embedded", "model": str(model.resolve())})
        cfg_settings = cfg_settings.model_copy(update={"llm": llm_settings})
    if llm_weight is not None and run_pipeline not in LLM_PIPELINES:
        fail(f"--llm-weight {llm_only}")
    # The service honours tagging.llm_weight; an eval of "the service's configuration" must too.
    weight = llm_weight if llm_weight is not None else cfg_settings.tagging.llm_weight
    tagger: dict[str, object] = {} if llm_mode == "auto" else {"llm_mode": llm_mode}
    if attribute_llm:
        if task != "attributes":
            fail("--attribute-llm applies to --task attributes")
        tagger["attribute_llm"] = True
    if weight is not None and run_pipeline in LLM_PIPELINES:
        tagger["llm_weight"] = weight
    cfg = EvalConfig(
        dataset=dataset, taxonomy=taxonomy, out=out, examples=examples,
        pipeline=run_pipeline, taxonomy_format=taxonomy_format,
        limit=limit, seed=seed, batch_size=batch_size, n_boot=bootstrap, name=name,
        tagger=tagger, task=task,
    )
    try:
        # on stderr: each long step (embedding, training, tagging) with counts and elapsed time
        with StepProgress(remaining=True) as steps:

            def embedder() -> CachedEmbedder:
                emb = embedder_from_settings(cfg_settings)
                emb.progress = steps.advance  # counts of the texts not cached yet
                return emb

            cache_dir = cfg_settings.data_dir / "cache" / "evals"
            llm_model = cfg_settings.llm.model or cfg_settings.llm.backend
            review_threshold = cfg_settings.tagging.review_threshold
            if task == "attributes":
                from evals.attributes.runner import run_attribute_eval

                emb_cfg = cfg_settings.embedder
                summary = run_attribute_eval(
                    cfg, embedder=embedder, llm=lambda: backend_from_settings(cfg_settings),
                    cache_dir=cache_dir, llm_model=llm_model, review_threshold=review_threshold,
                    embedder_name=f"{emb_cfg.backend}:{emb_cfg.model or 'default'}",
                    progress=steps.advance, step=steps.step,
                )
            else:
                summary = run_eval(
                    cfg, embedder=embedder, llm=lambda: backend_from_settings(cfg_settings),
                    cache_dir=cache_dir, llm_model=llm_model, review_threshold=review_threshold,
                    progress=steps.advance, step=steps.step,
                )
    except (DatasetError, TaxonomyError, RetrievalError, LLMError, ValueError) as exc:
        fail(str(exc))
    m = summary.metrics
    resumed = f" ({summary.resumed} resumed)" if summary.resumed else ""
    if task == "attributes":
        ci = m.get("ci95", {}).get("f1")
        ci_text = f" (95% CI {ci[0]:.2f}–{ci[1]:.2f})" if isinstance(ci, list | tuple) and len(ci) == 2 else ""
        console.print(
            f"[bold]{cfg.pipeline}[/] attributes on {summary.n} items{resumed}: F1 {m['f1']:.2f}{ci_text}, "
            f"P {m['precision']:.2f}, R {m['recall']:.2f}, off-schema values {m['off_schema_values']}, "
            f"{m.get('items_per_second')} items/s → {out}"
        )
        if m["off_schema_values"] > 0:
            fail("off-schema attribute values were returned: this is a hard failure")
        return
    ci = m.get("ci95", {}).get("waf1")
    ci_text = f" (95% CI {ci[0]:.2f}–{ci[1]:.2f})" if isinstance(ci, list | tuple) and len(ci) == 2 else ""
    console.print(
        f"[bold]{cfg.pipeline}[/] on {summary.n} items"
        + resumed
        + f": WAF1 {m['waf1']:.2f}{ci_text}, accuracy {m.get('accuracy', float('nan')):.2f}, "
        f"off-taxonomy {m['off_taxonomy_rate']}, {m.get('items_per_second')} items/s → {out}"
    )
    if m["off_taxonomy_rate"] > 0:
        fail("off-taxonomy tags were returned: this is a hard failure")
