"""``tagsmith db``: the schemas of the service's stores (``database.url`` or SQLite files):
``upgrade``, ``current``, ``copy`` (a single-machine installation into the shared database,
serve/db_copy.py), and ``revision`` for contributors (serve/migrations.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from serve.cli._common import console, fail, settings

if TYPE_CHECKING:
    from serve.settings import Settings

app = typer.Typer(no_args_is_help=True)


def _where(s: Settings) -> str:
    from serve.database import safe_url

    return safe_url(s.database.url_value) if s.database.url_value else f"SQLite files in {s.data_dir}"


def _unreachable(s: Settings, exc: Exception) -> None:
    fail(f"the database ({_where(s)}) is unreachable or refused the schema: "
         f"{type(exc).__name__}: {str(exc).splitlines()[0]}")


@app.command("upgrade")
def upgrade(
    sql: Annotated[bool, typer.Option(
        "--sql", help="print the SQL an upgrade of the shared database (database.url) would run, change nothing",
    )] = False,
) -> None:
    """Upgrade every store's schema to this release's (taxonomy, keys, feedback, review queue,
    jobs; index generations and UI sessions in a shared database; crosswalks and named
    taxonomies). Adopts databases made before migrations, keeping every row. Safe to run again
    and from several hosts at once (serialised). Take a backup first (docs/deploy.md)."""
    from sqlalchemy.exc import SQLAlchemyError

    from serve.filemodes import private_data_dir
    from serve.migrations import Target, offline_sql, upgrade_all
    from taxonomy.migrations import SchemaError, SchemaState

    s = settings()
    if sql:
        try:
            print(offline_sql(s) or "-- nothing to upgrade", end="\n")
        except (ValueError, SchemaError) as exc:
            fail(str(exc))
        except SQLAlchemyError as exc:
            _unreachable(s, exc)
        return

    def report(target: Target, before: SchemaState, after: SchemaState) -> None:
        change = "up to date" if before.current == after.current else f"{before.describe()} -> {after.current}"
        console.print(f"{target.label:<20} {change:<50} {target.where}", highlight=False, soft_wrap=True)

    private_data_dir(s.data_dir)
    try:
        upgrade_all(s, report)
    except SchemaError as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        _unreachable(s, exc)
    console.print(f"schema up to date: every store ({_where(s)})", highlight=False, soft_wrap=True)


@app.command("current")
def current() -> None:
    """Each store's schema revision and whether an upgrade is pending (reads only). Exit code 0:
    all at this release's head; 3: an upgrade is pending (`tagsmith db upgrade`); 1: a store
    is newer than this release, or the database is unreachable."""
    from sqlalchemy.exc import SQLAlchemyError

    from serve.migrations import current as states

    s = settings()
    try:
        found = states(s)
    except SQLAlchemyError as exc:
        _unreachable(s, exc)
    pending = newer = False
    for target, st in found:
        if not st.known:
            newer = True
            verdict = f"NEWER than this release (its head: {st.head})"
        elif st.pending:
            pending = True
            verdict = f"upgrade pending -> {st.head}"
        else:
            verdict = "at head"
        console.print(f"{target.label:<20} {st.describe():<36} {verdict:<40} {target.where}",
                      highlight=False, soft_wrap=True)
    if newer:
        fail("a store was upgraded by a newer release: run that release, or restore the backup taken before")
    if pending:
        console.print("an upgrade is pending: run `tagsmith db upgrade`", highlight=False)
        raise typer.Exit(3)


@app.command("copy")
def copy(
    source: Annotated[Path, typer.Option(
        "--from", help="the single-machine installation's data directory (its SQLite files and index/)",
        exists=True, file_okay=False, dir_okay=True,
    )],
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="print what would be copied (rows per table) and whether the target is empty; "
        "change nothing",
    )] = False,
) -> None:
    """Copy a single-machine installation (the SQLite files in --from) into the shared database
    (database.url, which must be empty: no replica started on it), keeping every row: taxonomy
    versions and edit log, API keys, feedback, the review queue, jobs and their results,
    crosswalks and their taxonomies, and the current index generation (the feedback examples
    are in it). Stop the service on that machine first. The source's stores are upgraded to
    this release's schema in place first (as `db upgrade` there would: take a backup), then
    the target's. All rows are written in one transaction per database (PostgreSQL: one for
    everything): after an error the target is as it was and running the copy again is safe.
    Web UI sessions are not copied (users log in again). docs/deploy.md, "Moving from one machine"."""
    from sqlalchemy.exc import SQLAlchemyError

    from retrieval.errors import IndexStateError
    from serve.db_copy import CopyRefused, StoreCopy, copy_installation
    from taxonomy.migrations import SchemaError

    s = settings()

    def report(done: StoreCopy) -> None:
        console.print(f"{done.label:<20} {done.describe():<60} {done.where}", highlight=False, soft_wrap=True)

    try:
        copied = copy_installation(s, source, dry_run=dry_run, report=report)
    except (CopyRefused, SchemaError, IndexStateError) as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        _unreachable(s, exc)
    rows = sum(n for store in copied for table, n in store.rows.items() if not table.startswith("index "))
    verb = "would copy" if dry_run else "copied"
    console.print(f"{verb} {rows:,} rows of {len(copied)} stores from {source} into {_where(s)}"
                  + (" (dry run: nothing changed)" if dry_run else ""), highlight=False, soft_wrap=True)


@app.command("revision")
def revision(
    store: Annotated[str, typer.Argument(help="the store whose schema changes (taxonomy, keys, feedback, review, "
                                              "jobs, generations, ui_sessions, crosswalks)")],
    message: Annotated[str, typer.Option("-m", "--message", help="what the migration does")],
    autogenerate: Annotated[bool, typer.Option(
        "--autogenerate/--empty", help="write the operations that bring the head schema to the store's "
        "tables in the code (compared on a scratch SQLite database at the head); check them by hand",
    )] = True,
) -> None:
    """For contributors: write a new migration of STORE into taxonomy/migrations/versions/STORE/
    (docs/migrations.md), numbered after the head (e.g. keys_0002)."""
    import tempfile

    from alembic import command

    from serve.database import open_engine
    from serve.migrations import ALL_SCHEMAS
    from taxonomy.migrations import config, head
    from taxonomy.migrations import upgrade as upgrade_store

    schema = ALL_SCHEMAS.get(store)
    if schema is None:
        fail(f"unknown store {store!r}: one of {', '.join(sorted(ALL_SCHEMAS))}")
    number = int(head(schema).rsplit("_", 1)[1]) + 1
    rev_id = f"{schema.name}_{number:04d}"
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_engine(Path(tmp) / "scratch.db")
        try:
            upgrade_store(engine, schema)
            with engine.begin() as conn:
                script = command.revision(config(schema, connection=conn), message=message,
                                          autogenerate=autogenerate, rev_id=rev_id)
        finally:
            engine.dispose()
    path = script.path if script is not None and not isinstance(script, list) else "?"
    console.print(f"wrote {path}: check it, then `tagsmith db upgrade`", highlight=False, soft_wrap=True)
