"""``tagsmith index``: build, extend, inspect and query the example index.

State lives under ``<data_dir>/index`` (published generations; in the database when
``database.url`` is set) and ``<data_dir>/cache``
(embeddings keyed by text hash + model): an interrupted ``build`` re-run only encodes what
the first run did not finish.
"""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from retrieval.generations import ANY, AnyBase
from serve.cli._common import StepProgress, console, fail, settings, store_settings

if TYPE_CHECKING:
    from retrieval import CachedEmbedder, Example, ExampleIndex, IndexStore
    from taxonomy import Snapshot

app = typer.Typer(no_args_is_help=True)

TaxonomyOpt = Annotated[
    Path | None,
    typer.Option("--taxonomy", help="taxonomy file (default: the packaged Shopify taxonomy)", exists=True, dir_okay=False),
]
TaxonomyFormatOpt = Annotated[str, typer.Option("--taxonomy-format", help="json, google, shopify, wdc-pave or flipkart")]


def _store() -> IndexStore:
    """Where the generations live: the data directory, or the database (``database.url``)."""
    from serve.runtime import open_index_store

    return open_index_store(store_settings())


def _embedder() -> CachedEmbedder:
    from retrieval import EmbedderError
    from serve.runtime import embedder_from_settings

    try:
        return embedder_from_settings(settings())
    except EmbedderError as exc:
        fail(str(exc))


def _taxonomy(path: Path | None, fmt: str) -> Snapshot:
    from taxonomy import TaxonomyError, load_default_taxonomy, load_taxonomy

    try:
        return load_default_taxonomy() if path is None else load_taxonomy(path, fmt)
    except (TaxonomyError, OSError) as exc:
        fail(f"cannot load the taxonomy: {exc}")


def _read(path: Path | None) -> list[Example]:
    from retrieval import ExampleError, packaged_examples_path, read_examples

    try:
        return list(read_examples(path or packaged_examples_path()))
    except (ExampleError, OSError) as exc:
        fail(str(exc))


def _embed_into(index: ExampleIndex, embedder: CachedEmbedder, examples: list[Example]) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from retrieval import add_examples

    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), console=console, transient=True,
    ) as progress:
        task = progress.add_task("embedding", total=len(examples))
        add_examples(index, embedder, examples, progress=lambda n: progress.advance(task, n))


def _check_tags(snap: Snapshot, examples: list[Example]) -> None:
    unknown = sorted({t for e in examples for t in e.tags if snap.resolve(t) is None})
    if unknown:
        console.print(
            f"[yellow]warning:[/] {len(unknown)} tag id(s) are not active in the taxonomy "
            f"and will not vote (e.g. {', '.join(unknown[:3])})"
        )


def _publish(index: ExampleIndex, embedder: CachedEmbedder, snap: Snapshot, base: str | AnyBase | None = ANY) -> None:
    """``base``: the generation ``index`` was loaded from (``index add``): if another one was
    published meanwhile (a replica's feedback), nothing is published and the command fails."""
    from retrieval import LexicalClassifier, StaleGenerationError
    from retrieval.calibration import describe
    from retrieval.publish import publish_index

    # the lexical classifier is part of the generation: retrained on every publication so
    # it always describes exactly the examples it is published with (~50 s per 10k)
    with console.status(f"training the lexical classifier on {len(index)} examples"):
        lexical = LexicalClassifier.fit(list(index))
    with console.status(f"calibrating confidences on held-out examples of the {len(index):,}"):
        try:
            with closing(_store()) as store:
                manifest, calibration = publish_index(
                    store, index, embedder=embedder, snapshot=snap, lexical=lexical,
                    taxonomy_version=snap.version, target_precision=settings().tagging.target_precision, base=base,
                )
        except StaleGenerationError:
            fail("the index changed while this command ran (another process published a generation): run it again")
    console.print(
        f"published [bold]{manifest.generation}[/]: {manifest.count} examples, "
        f"{manifest.tag_count} distinct tags, embedder {manifest.embedder} "
        f"(cache: {embedder.hits} hits, {embedder.misses} encoded)"
    )
    console.print(f"calibration: {describe(calibration)}", highlight=False, soft_wrap=True)


def _load(embedder: CachedEmbedder) -> tuple[ExampleIndex, str]:
    """The current index and its generation."""
    from retrieval import IndexStateError

    try:
        with closing(_store()) as store:
            index, manifest = store.load(embedder=embedder.name, dim=embedder.dim)
    except IndexStateError as exc:
        fail(str(exc))
    return index, manifest.generation


@app.command("build")
def build(
    examples: Annotated[
        Path | None,
        typer.Option("--examples", help="JSONL of {id,title,description,tags} (default: the shipped examples)", exists=True, dir_okay=False),
    ] = None,
    kind: Annotated[str, typer.Option(help="flat (exact) or hnsw (approximate, large catalogs)")] = "flat",
    taxonomy: TaxonomyOpt = None,
    taxonomy_format: TaxonomyFormatOpt = "json",
) -> None:
    """Build a new index from an examples file and publish it atomically."""
    from retrieval import INDEX_KINDS, ExampleIndex

    if kind not in INDEX_KINDS:
        fail(f"--kind must be one of {', '.join(INDEX_KINDS)}")
    records = _read(examples)
    snap = _taxonomy(taxonomy, taxonomy_format)
    _check_tags(snap, records)
    embedder = _embedder()
    index = ExampleIndex(embedder.dim, kind=kind)  # type: ignore[arg-type]
    _embed_into(index, embedder, records)
    _publish(index, embedder, snap)


@app.command("add")
def add(
    examples: Annotated[Path, typer.Argument(help="JSONL of examples to add or update (by id)", exists=True, dir_okay=False)],
    taxonomy: TaxonomyOpt = None,
    taxonomy_format: TaxonomyFormatOpt = "json",
) -> None:
    """Add or update examples in the current index and publish a new generation."""
    records = _read(examples)
    snap = _taxonomy(taxonomy, taxonomy_format)
    _check_tags(snap, records)
    embedder = _embedder()
    index, generation = _load(embedder)
    _embed_into(index, embedder, records)
    _publish(index, embedder, snap, base=generation)


@app.command("stats")
def stats(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Show the current generation: embedder, dimension, counts, taxonomy version."""
    from retrieval import IndexStateError
    from retrieval.store import stats as manifest_stats

    with closing(_store()) as store:
        try:
            info = manifest_stats(store.manifest())
        except IndexStateError as exc:
            fail(str(exc))
        info["generations"] = store.generations()
        info["path"] = store.where
    if as_json:
        console.print_json(json.dumps(info))
        return
    for key, value in info.items():
        if key == "calibration" and isinstance(value, dict):
            for name, figure in value.items():
                console.print(f"[bold]calibration.{name}[/]: {figure}", highlight=False)
            continue
        console.print(f"[bold]{key}[/]: {value}", highlight=False)


@app.command("search")
def search(
    text: Annotated[str, typer.Argument(help="product text (title, description...)")],
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="neighbours to show")] = 5,
    candidates: Annotated[int, typer.Option(min=1, max=100, help="candidate tags to show")] = 10,
    taxonomy: TaxonomyOpt = None,
    taxonomy_format: TaxonomyFormatOpt = "json",
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Nearest examples and ranked candidate tags for a product text."""
    from dataclasses import replace

    from rich.table import Table

    from retrieval import CandidateConfig, CandidateGenerator

    snap = _taxonomy(taxonomy, taxonomy_format)
    embedder = _embedder()
    index, _ = _load(embedder)
    config = replace(CandidateConfig(), limit=candidates)
    [result] = CandidateGenerator(embedder, snap, index, config=config).retrieve([text])
    neighbours = result.neighbours[:k]
    if as_json:
        console.print_json(json.dumps({
            "neighbours": [{"id": n.example.id, "score": n.score, "title": n.example.title, "tags": list(n.tags)} for n in neighbours],
            "candidates": [
                {"id": c.id, "score": c.score, "vote": c.vote, "similarity": c.similarity,
                 "path": snap.path_text(c.id), "sources": list(c.sources)}
                for c in result.candidates
            ],
        }))
        return
    table = Table(title="neighbours")
    for column in ("score", "id", "title", "tags"):
        table.add_column(column)
    for n in neighbours:
        table.add_row(f"{n.score:.3f}", n.example.id, n.example.title, ", ".join(snap.nodes[t].name for t in n.tags))
    console.print(table)
    table = Table(title="candidate tags")
    for column in ("score", "vote", "cosine", "path", "id"):
        table.add_column(column)
    for c in result.candidates:
        table.add_row(f"{c.score:.3f}", f"{c.vote:.2f}", f"{c.similarity:.2f}", snap.path_text(c.id), c.id)
    console.print(table)


@app.command("prebuild")
def prebuild(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="where to write (default: $TAGSMITH_PREBUILT_DIR, else share/tagsmith/embeddings in this environment)", file_okay=False),
    ] = None,
) -> None:
    """Embed the default taxonomy's node texts and the shipped examples once, into this
    environment (scripts/install.sh runs it), so that a first start does not."""
    import time
    import warnings

    from retrieval import EmbedderError
    from retrieval.prebuilt import build as build_prebuilt
    from serve.runtime import inner_embedder_from_settings

    warnings.filterwarnings("ignore")  # library chatter; errors still fail below
    t0 = time.perf_counter()
    with StepProgress() as steps:
        steps.step("loading the embedder")
        try:
            embedder = inner_embedder_from_settings(settings())
        except EmbedderError as exc:
            fail(str(exc))
        steps.step("embedding the default taxonomy and the shipped examples")
        try:
            where, n, computed = build_prebuilt(embedder, directory, progress=steps.advance)
        except OSError as exc:
            fail(f"cannot write the prebuilt embeddings: {exc}")
    state = f"embedded {n:,} texts" if computed else f"up to date: {n:,} texts"
    console.print(f"{state} with {embedder.name} → {where} ({time.perf_counter() - t0:.0f} s)",
                  highlight=False, soft_wrap=True)
