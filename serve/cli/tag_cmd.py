"""``tagsmith tag``: tag one product from the command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from serve.cli._common import (
    ATTRIBUTES_HELP,
    CROSSWALK_HELP,
    CrosswalkFlag,
    StepProgress,
    attribute_selection,
    check_selection,
    console,
    fail,
    store_settings,
)


def tag(
    title: Annotated[str, typer.Argument(help="product title")],
    description: Annotated[str, typer.Option(help="product description")] = "",
    category_text: Annotated[str, typer.Option(help="the shop's breadcrumb, if any")] = "",
    pipeline: Annotated[
        str | None, typer.Option(help="knn | zero-shot | rag | cascade (default from settings)")
    ] = None,
    attributes: Annotated[str | None, typer.Option("--attributes", help=ATTRIBUTES_HELP)] = None,
    crosswalk: Annotated[str | None, typer.Option("--crosswalk", help=CROSSWALK_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result contract as JSON")] = False,
) -> None:
    from pydantic import ValidationError

    from agent.contract import Product
    from agent.llm import LLMError
    from retrieval import RetrievalError
    from serve.runtime import build_runtime
    from taxonomy import TaxonomyError

    if pipeline is not None and pipeline not in ("hybrid", "knn", "zero-shot", "rag", "cascade"):
        fail(f"unknown pipeline {pipeline!r}: use hybrid, knn, zero-shot, rag or cascade")
    selection = attribute_selection(attributes)
    try:
        product = Product(title=title, description=description, category_text=category_text)
    except ValidationError as exc:
        fail(f"invalid product: {exc.errors()[0]['msg']}")
    try:
        # a first start (empty data directory) reports its slow steps on stderr
        with StepProgress() as progress:
            config = store_settings()  # schemas at the head (database.auto_upgrade) or a clear refusal
            wanted = config.tagging.attributes if selection is None else selection
            runtime = build_runtime(
                config, pipeline=pipeline, progress=progress, attributes=selection,
                eager_extractor=wanted != "off",
            )
    except (LLMError, RetrievalError, TaxonomyError) as exc:
        fail(str(exc))
    try:
        check_selection(runtime.tagger.snapshot, selection)
        with CrosswalkFlag(runtime.store, config, crosswalk) as second:
            second.check()  # an unknown name fails before tagging
            result = second.add([runtime.tagger.tag(product)])[0]
    finally:
        runtime.close()
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    table = Table(title=f"{title[:60]} (taxonomy v{result.taxonomy_version}, {result.pipeline})")
    for col in ("id", "path", "confidence"):
        table.add_column(col, overflow="fold")
    for t in result.tags:
        table.add_row(t.id, " > ".join(t.path), f"{t.confidence:.2f}")
    console.print(table)
    if result.attributes:
        attrs = Table(title="attributes")
        for col in ("attribute", "value", "confidence", "from"):
            attrs.add_column(col, overflow="fold")
        for a in result.attributes:
            for v in a.values:
                attrs.add_row(a.name, v.value, f"{v.confidence:.2f}", v.evidence.source)
        console.print(attrs)
    if result.crosswalk is not None:
        cw = result.crosswalk
        where = f" (via ancestor {cw.source_id})" if cw.status == "ancestor" else ""
        console.print(f"{cw.taxonomy} v{cw.version}: {cw.status}{where}", markup=False, highlight=False)
        for counterpart in cw.tags:
            console.print(f"  {counterpart.id}  {' > '.join(counterpart.path)}", markup=False, highlight=False)
    if result.needs_review:
        console.print("[yellow]needs review[/]")
