"""Helpers shared by the CLI commands: console, settings loading, clean failures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from serve.settings import Settings, load_settings

if TYPE_CHECKING:
    from pathlib import Path

    from rich.progress import TaskID

    from agent.contract import AttributeSelection, TagResult
    from taxonomy import Snapshot, TaxonomyStore

    R = TypeVar("R", bound=TagResult)

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line error to stderr and exit: the CLI never shows a traceback for user errors."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


ATTRIBUTES_HELP = (
    "attributes to tag: on (all of the category's), off (none), or ids / names, comma-separated "
    "(e.g. Color,Size); default: tagging.attributes"
)


def attribute_selection(flag: str | None) -> AttributeSelection | None:
    """``--attributes`` as a selection (None: not given); a bad value fails the command."""
    if flag is None:
        return None
    from serve.attribute_selection import parse_flag

    try:
        return parse_flag(flag)
    except ValueError as exc:
        fail(f"--attributes: {exc}")


def check_selection(snapshot: Snapshot, selection: AttributeSelection | None) -> None:
    """Fail when none of the names asked for is an attribute of the taxonomy."""
    from serve.attribute_selection import selection_problem

    problem = selection_problem(
        snapshot, selection, listed_by="`tagsmith taxonomy show CATEGORY` lists a category's"
    )
    if problem is not None:
        fail(f"--attributes: {problem}")


CROSSWALK_HELP = "also give the top tag in a second taxonomy through this stored crosswalk (e.g. google)"


class CrosswalkFlag:
    """``--crosswalk NAME`` for ``tag`` and ``tag-file``: the data directory's crosswalks,
    opened once for the run (None: the flag was not given, results pass unchanged)."""

    def __init__(self, runtime_store: TaxonomyStore, config: Settings, name: str | None) -> None:
        from serve.crosswalks import open_crosswalk_catalog

        self.name = name
        self._catalog = None if name is None else open_crosswalk_catalog(config, runtime_store)

    def check(self) -> None:
        """Fail the command (before any tagging) when NAME is no usable crosswalk."""
        self.add([])

    def add(self, results: list[R]) -> list[R]:
        if self._catalog is None or self.name is None:
            return results
        from serve.crosswalk_tags import add_crosswalk, check_crosswalk
        from taxonomy.crosswalk_catalog import MissingTaxonomy
        from taxonomy.crosswalk_store import UnknownCrosswalk

        try:
            if not results:
                check_crosswalk(self._catalog, self.name)
            return add_crosswalk(self._catalog, self.name, results)
        except (UnknownCrosswalk, MissingTaxonomy, ValueError) as exc:
            fail(f"--crosswalk: {exc} (`tagsmith crosswalk list` lists them)")

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()

    def __enter__(self) -> CrosswalkFlag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def settings() -> Settings:
    try:
        return load_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        fail(f"invalid configuration: {problems}", 2)
    except (FileNotFoundError, ValueError) as exc:
        fail(f"invalid configuration: {exc}", 2)


def store_settings() -> Settings:
    """:func:`settings`, for a command that opens the service's stores: the data directory
    made private and every store's schema at the head (upgraded now when
    ``database.auto_upgrade`` allows: serve/migrations.py); a schema this code cannot use
    fails the command with the reason, never a traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    from serve.database import safe_url
    from serve.filemodes import private_data_dir
    from serve.migrations import prepare
    from taxonomy.migrations import SchemaError

    s = settings()
    private_data_dir(s.data_dir)
    try:
        prepare(s)
    except SchemaError as exc:
        fail(f"refusing to start: {exc}", 2)
    except SQLAlchemyError as exc:
        where = safe_url(s.database.url_value) if s.database.url_value else str(s.data_dir)
        fail(f"the database ({where}) is unreachable or refused the schema: {type(exc).__name__}: "
             f"{str(exc).splitlines()[0]}", 2)
    return s


class StepProgress:
    """Start-up steps drawn as rich progress lines on stderr (stdout stays clean for
    ``--json``). Nothing is drawn until the first :meth:`step`; each step keeps its line
    with its elapsed time, so a first start shows what it spent its time on."""

    def __init__(self, *, remaining: bool = False) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            ProgressColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns: list[ProgressColumn] = [
            SpinnerColumn(finished_text="[green]✓[/]"), TextColumn("{task.description}"), BarColumn(),
            TextColumn("{task.fields[count]}"), TimeElapsedColumn(),
        ]
        if remaining:
            columns.append(TimeRemainingColumn())
        self._progress = Progress(*columns, console=err_console)
        self._task: TaskID | None = None
        self._started = False

    def step(self, description: str) -> None:
        if not self._started:
            self._progress.start()
            self._started = True
        self._finish_task()
        self._task = self._progress.add_task(description, total=None, count="")

    def advance(self, done: int, total: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=done, total=total, count=f"{done:,}/{total:,}")

    def done(self) -> None:
        self._finish_task()

    def _finish_task(self) -> None:
        if self._task is not None:
            task = self._progress.tasks[-1]
            total = task.total if task.total is not None else 1.0
            self._progress.update(self._task, completed=total, total=total)
            self._progress.stop_task(self._task)
            self._task = None

    def close(self) -> None:
        if self._started:
            self._finish_task()
            self._progress.stop()
            self._started = False

    def __enter__(self) -> StepProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# the arguments of every command that imports a taxonomy file (taxonomy import, crosswalk import-taxonomy)
TaxonomyFormatArg = Annotated[str, typer.Argument(help="json, google, shopify, wdc-pave or flipkart")]
TaxonomyFileArg = Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the file (.gz accepted)")]
VersionMessageOpt = Annotated[str | None, typer.Option(help="a note stored with the version")]
