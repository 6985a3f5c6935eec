"""``tagsmith tag-file IN -o OUT.jsonl``: tag a catalog file, resumably.

Each input line (JSONL) or row (``.parquet``) is a product (the fields of
:class:`agent.contract.Product`; ``id`` required so a re-run can skip what is done; read by
:mod:`agent.bulk.source`). Results are appended a batch at a time and fsynced
(:mod:`retrieval.durable`); a re-run after a crash or Ctrl-C skips the ids already in OUT
and cuts a torn last line. Bad lines (invalid JSON, missing id, invalid fields, duplicate
ids) do not stop the run: they are written to ``OUT.errors.jsonl`` with their line number
and counted at the end (exit code 1 when there were any).

Nothing grows with the file: two streamed passes over the input (:mod:`agent.bulk.source`: count,
then tag in file order), the ids already written and the repeated ones as 16-byte digests
(:mod:`agent.bulk.ids`), OUT read back a line at a time, the errors file appended as bad lines
are met. When stdout is not a terminal, a progress line goes to stderr every
``--progress-every`` seconds (:mod:`serve.cli.progress_log`).

``--engine ray`` tags on Ray Data actors (:mod:`agent.bulk.ray_engine`), each loading the
runtime once, fed from this process through a bounded window; this process stays the only
reader and writer, appending results in input order as they arrive, so the output, the resume
and the exactly-once guarantee are the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
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
    store_settings,
)
from serve.settings import Settings


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


class _BadLines:
    """The errors file, appended a thousand bad lines at a time (and at the end), in file order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._buffer: list[str] = []

    def add(self, bad: dict[str, Any]) -> None:
        self.count += 1
        self._buffer.append(json.dumps(bad, ensure_ascii=False) + "\n")
        if len(self._buffer) >= 1000:
            self.flush()

    def flush(self) -> None:
        from retrieval.durable import append_lines

        append_lines(self.path, self._buffer)
        self._buffer = []


def _batches(todo: Iterable[Any], tag_many: Any, batch_size: int) -> Iterator[tuple[list[Any], list[Any]]]:
    batch: list[Any] = []
    for product in todo:  # streamed: one batch in memory
        batch.append(product)
        if len(batch) == batch_size:
            yield batch, tag_many(batch)
            batch = []
    if batch:
        yield batch, tag_many(batch)


def tag_file(
    input_file: Annotated[Path, typer.Argument(help="products: JSONL, or Parquet (.parquet, .pq)", exists=True, dir_okay=False)],
    output: Annotated[Path, typer.Option("-o", "--output", help="JSONL of results (appended, resumable)", dir_okay=False)],
    pipeline: Annotated[str | None, typer.Option(help="hybrid | knn | zero-shot | rag | cascade (default from settings)")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=1024, help="products per batch")] = 32,
    attributes: Annotated[str | None, typer.Option("--attributes", help=ATTRIBUTES_HELP)] = None,
    review_queue: Annotated[bool, typer.Option(
        "--review-queue", help="also put results flagged needs_review into the data directory's review "
        "queue (source tag-file; `tagsmith serve` shows them at /v1/review)",
    )] = False,
    crosswalk: Annotated[str | None, typer.Option("--crosswalk", help=CROSSWALK_HELP)] = None,
    engine: Annotated[str, typer.Option(
        help="local: this process; ray: Ray Data actors, each loading the runtime once (extra tagsmith[ray])",
    )] = "local",
    address: Annotated[str | None, typer.Option(
        help="ray: the cluster (auto, or ray://host:10001); default: a local Ray instance with --workers CPUs",
    )] = None,
    workers: Annotated[int | None, typer.Option(
        min=1, max=4096, help="ray: tagging actors (default: one per CPU of the machine or cluster)",
    )] = None,
    progress_every: Annotated[float, typer.Option(
        "--progress-every", min=0, help="when stdout is not a terminal (a job's log): a progress line "
        "(done/total, products/s, ETA) on stderr every this many seconds; 0: none",
    )] = 60.0,
) -> None:
    """Tag every product of a JSONL or Parquet file; re-run the same command to resume. Each
    result line is the tagging contract (attributes included; needs_review also flags
    attribute values below tagging.attribute_review_threshold)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from agent.bulk import IdSet, InputChangedError, scan_file, stream_todo
    from agent.llm import LLMError
    from retrieval import RetrievalError
    from retrieval.durable import append_lines, iter_resume_keys
    from serve.cli.progress_log import ProgressLog
    from serve.runtime import build_runtime, bulk_settings
    from taxonomy import TaxonomyError

    if pipeline is not None and pipeline not in ("hybrid", "knn", "zero-shot", "rag", "cascade"):
        fail(f"unknown pipeline {pipeline!r}: use hybrid, knn, zero-shot, rag or cascade")
    if engine not in ("local", "ray"):
        fail(f"unknown engine {engine!r}: use local or ray")
    if engine == "local" and (address is not None or workers is not None):
        fail("--address and --workers are options of --engine ray")
    if output.resolve() == input_file.resolve():
        fail("the output file must not be the input file")
    if engine == "ray":
        from agent.bulk.ray_engine import RAY_EXTRA

        try:
            import ray  # noqa: F401
        except ImportError:
            fail(RAY_EXTRA)
    selection = attribute_selection(attributes)
    errors_file = output.with_name(output.name + ".errors.jsonl")
    # two streamed passes over the input (agent.bulk.source), never holding it: the ids already
    # written and the input's repeated ids are kept as 16-byte digests (agent.bulk.ids)
    done = IdSet.of(iter_resume_keys(output))
    errors_file.unlink(missing_ok=True)  # rewritten on every run: it describes the input
    try:
        scan = scan_file(input_file, done)
    except ValueError as exc:  # an unreadable Parquet file
        fail(str(exc))
    bad = _BadLines(errors_file)
    todo = stream_todo(input_file, done, scan, bad.add)
    total = scan.products
    queue: _ReviewQueue | None = None  # (nothing to tag: nothing to flag)
    ray_stats: Any = None
    if not scan.todo:
        for _ in todo:  # nothing to tag: the pass writes the bad lines
            pass
    else:
        try:
            with StepProgress() as progress:
                config = bulk_settings(store_settings())  # the embedder on its bulk runtime; schemas checked
                wanted = config.tagging.attributes if selection is None else selection
                # the ray engine too: it prepares the data directory (a first start's seeding
                # and index) once, before the workers load it, and checks the flags below
                runtime = build_runtime(
                    config, pipeline=pipeline, progress=progress, attributes=selection,
                    eager_extractor=wanted != "off" and engine == "local",
                )
        except (LLMError, RetrievalError, TaxonomyError) as exc:
            fail(str(exc))
        if review_queue:
            queue = _ReviewQueue(config)
        columns = (TextColumn("[bold]tagging"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        try:
            check_selection(runtime.tagger.snapshot, selection)
            second = CrosswalkFlag(runtime.store, config, crosswalk)
            second.check()  # an unknown name fails before tagging
            if engine == "ray":
                from agent.bulk.ray_engine import RayRunStats, tag_on_ray
                from serve.bulk_tagging import RuntimeTaggingFactory

                # each worker loads its own runtime; this one serves the crosswalk and checks
                factory = RuntimeTaggingFactory(config, pipeline, selection, eager_extractor=wanted != "off")
                err_console.print(f"[bold]ray:[/] {address or 'local instance'}, "
                                  f"{workers or 'one per CPU'} worker(s), {scan.todo:,} products",
                                  highlight=False, soft_wrap=True)
                ray_stats = RayRunStats()
                batches = tag_on_ray(todo, factory, total=scan.todo, workers=workers, address=address,
                                     batch_size=batch_size, stats=ray_stats)
            else:
                batches = _batches(todo, runtime.tagger.tag_many, batch_size)
            log = ProgressLog(total, scan.done, lambda line: err_console.print(line, highlight=False, soft_wrap=True),
                              every_s=0 if console.is_terminal else progress_every)
            with second, Progress(*columns, console=console) as bar:
                task = bar.add_task("tag", total=total, completed=scan.done)
                for batch, tagged in batches:
                    results = second.add(tagged)
                    append_lines(output, [r.model_dump_json() + "\n" for r in results])
                    if queue is not None:
                        queue.add(batch, results)
                    bar.update(task, advance=len(batch))
                    log.advance(len(batch))
            log.final()
            if ray_stats is not None:  # a restarted worker is a new process: it shows here
                err_console.print(f"[bold]ray:[/] {ray_stats.summary()}", highlight=False, soft_wrap=True)
        except InputChangedError as exc:
            fail(f"{exc} (the results written so far are kept)")
        except Exception as exc:
            if engine == "ray" and _is_ray_failure(exc):
                fail(f"the Ray run failed ({type(exc).__name__}: {str(exc)[:500]}); "
                     f"the results written so far are kept: re-run to resume")
            raise
        finally:
            runtime.close()
            if queue is not None:
                queue.close()
            bad.flush()
    bad.flush()
    console.print(
        f"{scan.todo} tagged, {scan.done} already in {output}"
        + (f", {queue.enqueued} flagged into the review queue" if queue is not None else "")
        + (f", [yellow]{bad.count} bad line(s) → {errors_file}[/]" if bad.count else ""),
        soft_wrap=True,  # one line, whatever the terminal width: scripts grep it
    )
    if bad.count:
        raise typer.Exit(1)


def _is_ray_failure(exc: BaseException) -> bool:
    """A Ray error (a worker that kept dying, an unreachable cluster), not a bug of ours."""
    from agent.bulk.ray_engine import RayUnavailableError

    return isinstance(exc, RayUnavailableError) or type(exc).__module__.startswith("ray.")
