"""``tagsmith tag-file IN.jsonl -o OUT.jsonl``: tag a catalog file, resumably.

Each input line is a product (the fields of :class:`agent.contract.Product`; ``id``
required so a re-run can skip what is done). Results are appended a batch at a time and
fsynced (:mod:`retrieval.durable`); a re-run after a crash or Ctrl-C skips the ids already in
OUT and cuts a torn last line. Bad lines (invalid JSON, missing id, invalid fields,
duplicate ids) do not stop the run: they are written to ``OUT.errors.jsonl`` with their
line number and counted at the end (exit code 1 when there were any).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Annotated, Any

import typer

from serve.cli._common import (
    ATTRIBUTES_HELP,
    CROSSWALK_HELP,
    CrosswalkFlag,
    StepProgress,
    attribute_selection,
    check_selection,
    console,
    err_console,
    fail,
    settings,
)
from serve.settings import Settings


def _products(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, Product or None, error message or None) for each non-blank line."""
    from pydantic import ValidationError

    from agent.contract import Product

    with path.open("rb") as fh:  # bytes: a line in another encoding is one bad line, not the end
        for lineno, data in enumerate(fh, 1):
            if not data.strip():
                continue
            try:
                raw = json.loads(data.decode("utf-8"))
            except UnicodeDecodeError:
                yield lineno, None, "not UTF-8"
                continue
            except json.JSONDecodeError as exc:
                yield lineno, None, f"invalid JSON: {exc.msg}"
                continue
            if not isinstance(raw, dict) or not str(raw.get("id") or "").strip():
                yield lineno, None, "each product needs a non-empty \"id\" (used to resume)"
                continue
            try:
                yield lineno, Product.model_validate(raw), None
            except ValidationError as exc:
                first = exc.errors()[0]
                yield lineno, None, f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


class _ReviewQueue:
    """``--review-queue``: flagged results into the data directory's review queue, a batch per
    transaction; a failed write is reported once and never stops the tagging."""

    def __init__(self, config: Settings) -> None:
        from serve.cli.review_cmd import review_store
        from serve.runtime import open_index_store

        with closing(open_index_store(config)) as index_store:
            pointer = index_store.current()
        self.generation = pointer[0] if pointer else None
        self.store = review_store()
        self.enqueued = 0
        self.failed = False

    def add(self, products: Sequence[Any], results: Sequence[Any]) -> None:
        from serve.review import flagged_entries

        try:
            self.enqueued += self.store.enqueue_many(flagged_entries(products, results, "tag-file", self.generation)).created
        except Exception as exc:  # the tags are written: the queue is a side channel
            if not self.failed:
                err_console.print(f"[yellow]warning:[/] review queue write failed ({exc}); tagging goes on",
                                  soft_wrap=True, highlight=False)
            self.failed = True

    def close(self) -> None:
        self.store.close()


def tag_file(
    input_file: Annotated[Path, typer.Argument(help="JSONL of products", exists=True, dir_okay=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="JSONL of results (appended, resumable)", dir_okay=False)],
    pipeline: Annotated[str | None, typer.Option(help="hybrid | knn | zero-shot | rag | cascade (default from settings)")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=1024, help="products per batch")] = 32,
    attributes: Annotated[str | None, typer.Option("--attributes", help=ATTRIBUTES_HELP)] = None,
    review_queue: Annotated[bool, typer.Option(
        "--review-queue", help="also put results flagged needs_review into the data directory's review "
        "queue (source tag-file; `tagsmith serve` shows them at /v1/review)",
    )] = False,
    crosswalk: Annotated[str | None, typer.Option("--crosswalk", help=CROSSWALK_HELP)] = None,
) -> None:
    """Tag every product of a JSONL file; re-run the same command to resume. Each result
    line is the tagging contract (attributes included; needs_review also flags attribute
    values below tagging.attribute_review_threshold)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from agent.llm import LLMError
    from retrieval import RetrievalError
    from retrieval.durable import append_lines, resume_keys
    from serve.runtime import build_runtime, bulk_settings
    from taxonomy import TaxonomyError

    if pipeline is not None and pipeline not in ("hybrid", "knn", "zero-shot", "rag", "cascade"):
        fail(f"unknown pipeline {pipeline!r}: use hybrid, knn, zero-shot, rag or cascade")
    if output.resolve() == input_file.resolve():
        fail("the output file must not be the input file")
    selection = attribute_selection(attributes)
    errors_file = output.with_name(output.name + ".errors.jsonl")
    done = set(resume_keys(output))
    errors_file.unlink(missing_ok=True)  # rewritten on every run: it describes the input
    todo, bad = [], []
    first_line: dict[str | None, int] = {}
    for lineno, product, problem in _products(input_file):
        if problem is not None:
            bad.append({"line": lineno, "error": problem})
        elif product.id in first_line:  # reported on every run, whether the first one is done or not
            bad.append({"line": lineno, "error": f"duplicate id {product.id!r} (first on line {first_line[product.id]})"})
        else:
            first_line[product.id] = lineno
            if product.id not in done:
                todo.append(product)
    if bad:
        append_lines(errors_file, [json.dumps(b, ensure_ascii=False) + "\n" for b in bad])
    total = len(todo) + len(done)
    queue: _ReviewQueue | None = None  # (nothing to tag: nothing to flag)
    if todo:
        try:
            with StepProgress() as progress:
                config = bulk_settings(settings())  # the embedder on its bulk runtime
                wanted = config.tagging.attributes if selection is None else selection
                runtime = build_runtime(
                    config, pipeline=pipeline, progress=progress, attributes=selection,
                    eager_extractor=wanted != "off",
                )
        except (LLMError, RetrievalError, TaxonomyError) as exc:
            fail(str(exc))
        if review_queue:
            queue = _ReviewQueue(config)
        columns = (TextColumn("[bold]tagging"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        try:
            check_selection(runtime.tagger.snapshot, selection)
            second = CrosswalkFlag(runtime.store, config.data_dir, crosswalk)
            second.check()  # an unknown name fails before tagging
            with second, Progress(*columns, console=console) as bar:
                task = bar.add_task("tag", total=total, completed=len(done))
                for start in range(0, len(todo), batch_size):
                    batch = todo[start : start + batch_size]
                    results = second.add(runtime.tagger.tag_many(batch))
                    append_lines(output, [r.model_dump_json() + "\n" for r in results])
                    if queue is not None:
                        queue.add(batch, results)
                    bar.update(task, advance=len(batch))
        finally:
            runtime.close()
            if queue is not None:
                queue.close()
    console.print(
        f"{len(todo)} tagged, {len(done)} already in {output}"
        + (f", {queue.enqueued} flagged into the review queue" if queue is not None else "")
        + (f", [yellow]{len(bad)} bad line(s) → {errors_file}[/]" if bad else ""),
        soft_wrap=True,  # one line, whatever the terminal width: scripts grep it
    )
    if bad:
        raise typer.Exit(1)
