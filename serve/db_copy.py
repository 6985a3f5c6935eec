"""``tagsmith db copy``: a single-machine installation (the SQLite files of a data directory)
into the shared database (``database.url``), every row kept, so that it can go on as N
replicas (docs/deploy.md, "Moving from one machine").

What is copied: every table of every store of the source (:func:`serve.migrations.targets`
of the data directory: taxonomy versions and edit log, API keys, feedback, the review queue,
jobs with their items and results, crosswalks and the taxonomies they map to), in
primary-key order, in batches (bounded memory whatever the tables hold), plus the data
directory's current index generation (``index/``: the feedback examples are in it, and a
replica starting on a database without a generation would build one from the packaged
examples instead), published into the database's generation tables. Not copied: the web
UI's sessions (in memory on one machine: users log in again), caches.

Order of work: the source's stores are upgraded to this release's schema in place (what
``tagsmith db upgrade`` does; jobs of the older file layout are moved into its jobs.db), the
target's too (created where missing), then everything is written in **one transaction per
database**: on PostgreSQL that is one transaction for all (the crosswalks' taxonomies are
schemas ``tax_<name>`` of the same database); on a shared SQLite file the crosswalks'
taxonomies are files beside it, each with its own transaction, all held open until every
row is written and then committed (the taxonomy files first, the shared file last). An error
rolls everything back and removes the taxonomy schemas or files the copy created: the
target is left as it was, and running the copy again is safe.

The target must be empty: every store's tables hold nothing but what a new database holds
after ``tagsmith db upgrade`` (no replica has started on it). Merging two installations is
not offered: taxonomy versions, job and review ids would interleave or collide.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    MetaData,
    Table,
    delete,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url

from retrieval import IndexStore
from retrieval.generations_db import SCHEMA as GENERATIONS
from retrieval.generations_db import publish_on
from retrieval.store import Manifest, publish_copy
from serve.database import open_engine, safe_url
from serve.jobs.store import JobStore
from serve.migrations import Target, named_taxonomy, targets, upgrade_one
from serve.settings import DatabaseSettings, Settings
from taxonomy.migrations import StoreSchema, upgrade

#: rows per INSERT, and the bytes a batch may hold before it is written (taxonomy checkpoints
#: and crosswalk documents are blobs, up to megabytes each)
BATCH_ROWS = 500
BATCH_BYTES = 16 << 20


class CopyRefused(Exception):
    """The copy cannot start or go on; the message says why and what to do (nothing written)."""


@dataclass
class StoreCopy:
    """What was (or would be) copied into one store: rows per table."""

    label: str
    where: str
    rows: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        return ", ".join(f"{table} {n:,}" for table, n in self.rows.items()) or "no tables"


@dataclass(frozen=True)
class _Pair:
    source: Target
    target: Target


def source_settings(settings: Settings, data_dir: Path) -> Settings:
    """``settings`` as the single-machine installation in ``data_dir`` saw them (no database URL)."""
    return settings.model_copy(update={"data_dir": data_dir, "database": DatabaseSettings(), "database_url": None})


def _pairs(settings: Settings, source: Settings) -> list[_Pair]:
    """Each source store that exists, with the target store it goes to."""
    by_label = {t.label: t for t in targets(settings)}
    pairs = []
    for store in targets(source):
        assert isinstance(store.location, Path)  # SQLite mode: every store is a file
        if not store.location.exists():
            continue
        if store.label.startswith("taxonomy:"):
            target = named_taxonomy(settings, store.label.removeprefix("taxonomy:"))
        else:
            target = by_label[store.label]
        if _file_of(target.location) == store.location.resolve():
            raise CopyRefused(f"the target of the {store.label} store is its source file {store.location}")
        pairs.append(_Pair(store, target))
    return pairs


def _file_of(location: Path | str) -> Path | None:
    """The SQLite file at ``location`` (a Path or a ``sqlite:///`` URL), resolved; None for a server."""
    if isinstance(location, Path):
        return location.resolve()
    parsed = make_url(location)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database).expanduser().resolve()


def _check_source(data_dir: Path) -> None:
    if not (data_dir / "taxonomy.db").is_file():
        raise CopyRefused(f"{data_dir} is not a tagsmith data directory (no taxonomy.db)")


# ---- reading and writing tables ---------------------------------------------------------------
def _tables(store: Target) -> list[Table]:
    """``store``'s tables in dependency order (parents first), in its PostgreSQL schema if any."""
    tables = store.schema.metadata.sorted_tables
    if store.namespace is None:
        return list(tables)
    moved = MetaData()
    return [t.to_metadata(moved, schema=store.namespace) for t in tables]


@functools.cache
def _new_rows(schema: StoreSchema) -> dict[str, list[tuple[Any, ...]]]:
    """The rows a store holds right after ``db upgrade`` of an empty database (the taxonomy
    store's head row): read from a scratch SQLite database migrated to the head."""
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_engine(Path(tmp) / "new.db")
        try:
            upgrade(engine, schema)
            with engine.connect() as conn:
                return {t.name: [tuple(r) for r in conn.execute(select(t))] for t in schema.metadata.sorted_tables}
        finally:
            engine.dispose()


def _occupied(conn: Connection, store: Target) -> tuple[str, int] | None:
    """(table, rows) of one of ``store``'s tables that holds more than a new database's rows
    (a table with more rows first: the message names that one); None when the store is as
    ``db upgrade`` makes it (or has no tables yet)."""
    existing = set(inspect(conn).get_table_names(schema=store.namespace))
    new = _new_rows(store.schema)
    changed = []
    for table in _tables(store):
        if table.name not in existing:
            continue
        seed = new.get(table.name, [])
        rows = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
        if rows > len(seed):
            return table.name, rows
        if [tuple(r) for r in conn.execute(select(table))] != seed:
            changed.append((table.name, rows))
    return changed[0] if changed else None


def _refuse(store: Target, table: str, rows: int) -> CopyRefused:
    return CopyRefused(
        f"the target is not empty: store {store.label}, table {table} holds {rows:,} row(s) "
        f"({store.where}). `tagsmith db copy` needs a new database that no replica has started on: "
        "create one (or drop this one) and run it again"
    )


def _size(values: Mapping[str, Any]) -> int:
    return sum(len(v) if isinstance(v, (bytes, str)) else 8 for v in values.values())


def _insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """One batch of rows into ``table`` (a function of its own: tests inject failures here)."""
    conn.execute(insert(table), rows)


def _copy_table(source: Connection, target: Connection, table: Table, into: Table) -> int:
    """Every row of ``table`` (source) into ``into`` (target), in primary-key order, in
    batches; the number of rows. Naive datetimes (how SQLite returns them) are UTC, as the
    stores write them, and stored as such in a ``timestamptz``."""
    zoned = [c.name for c in table.columns if isinstance(c.type, DateTime) and c.type.timezone]
    rows = source.execution_options(yield_per=BATCH_ROWS).execute(select(table).order_by(*table.primary_key.columns))
    batch: list[dict[str, Any]] = []
    size = copied = 0
    for row in rows.mappings():
        values = dict(row)
        for name in zoned:
            value = values[name]
            if isinstance(value, datetime) and value.tzinfo is None:
                values[name] = value.replace(tzinfo=UTC)
        batch.append(values)
        size += _size(values)
        if len(batch) >= BATCH_ROWS or size >= BATCH_BYTES:
            _insert(target, into, batch)
            copied, batch, size = copied + len(batch), [], 0
    if batch:
        _insert(target, into, batch)
        copied += len(batch)
    return copied


def _reset_sequences(conn: Connection, table: Table) -> None:
    """PostgreSQL: the sequence behind an integer primary key (``review_events.id``…) past the
    ids just inserted explicitly, or the next insert would collide with a copied row."""
    column = table.autoincrement_column
    if conn.dialect.name != "postgresql" or column is None:
        return
    name = f'"{table.schema}"."{table.name}"' if table.schema else f'"{table.name}"'
    conn.execute(text(
        f'SELECT setval(pg_get_serial_sequence(:table, :column), MAX("{column.name}")) FROM {name} '
        f'HAVING MAX("{column.name}") IS NOT NULL'
    ), {"table": name, "column": column.name})


# ---- the copy ----------------------------------------------------------------------------------
@dataclass
class _Databases:
    """One connection per target database (location), each in a transaction of its own."""

    stack: contextlib.ExitStack
    engines: dict[str, Engine] = field(default_factory=dict)
    conns: dict[str, Connection] = field(default_factory=dict)

    def conn(self, store: Target) -> Connection:
        key = str(store.location)
        if key not in self.conns:
            engine = self.engines[key] = open_engine(store.location)
            self.stack.callback(engine.dispose)
            conn = self.stack.enter_context(engine.connect().execution_options(sqlite_begin="IMMEDIATE"))
            conn.begin()
            self.conns[key] = conn
        return self.conns[key]

    def commit(self) -> None:
        """The taxonomy files first, the shared database last (its rows name them)."""
        for key in sorted(self.conns, key=lambda k: "://" in k):
            self.conns[key].commit()


def _source_index(data_dir: Path) -> IndexStore | None:
    store = IndexStore(data_dir / "index")
    return store if store.current() is not None else None


def copy_installation(
    settings: Settings, data_dir: Path, *, dry_run: bool = False, report: Callable[[StoreCopy], None] | None = None,
) -> list[StoreCopy]:
    """Copy the installation in ``data_dir`` into ``settings.database.url`` (module docstring).
    ``report`` hears about each store as it is done (with ``dry_run``: as it is counted,
    nothing written, nothing upgraded). CopyRefused: nothing was written."""
    url = settings.database.url_value
    if not url:
        raise CopyRefused("set the shared database to copy into: database.url (TAGSMITH_DATABASE_URL)")
    data_dir = data_dir.expanduser().resolve()
    _check_source(data_dir)
    source = source_settings(settings, data_dir)
    if dry_run:
        return _dry_run(settings, source, report)
    if any((data_dir / "jobs").glob("job_*")):  # jobs of an older tagsmith's file layout: into jobs.db first
        with contextlib.closing(JobStore(source.store_location("jobs"), staging=data_dir / "jobs")) as jobs:
            jobs.import_files()
    pairs = _pairs(settings, source)
    for pair in pairs:
        upgrade_one(pair.source)  # in place, as `tagsmith db upgrade` on that machine would
    everything = {t.label: t for t in targets(settings)} | {p.target.label: p.target for p in pairs}
    created = [t for t in everything.values() if not _exists(t)]
    try:
        for store in everything.values():
            upgrade_one(store)
        done = _copy(data_dir, pairs, list(everything.values()), url, report)
    except BaseException:
        _remove(created)
        raise
    return done


def _copy(
    data_dir: Path, pairs: list[_Pair], stores: list[Target], url: str, report: Callable[[StoreCopy], None] | None,
) -> list[StoreCopy]:
    done: list[StoreCopy] = []
    with contextlib.ExitStack() as stack:
        dbs = _Databases(stack)
        for store in stores:  # every store of the target, copied into or not
            occupied = _occupied(dbs.conn(store), store)
            if occupied is not None:
                raise _refuse(store, *occupied)
        for pair in pairs:
            conn = dbs.conn(pair.target)
            copied = StoreCopy(pair.target.label, pair.target.where)
            with _disposing(open_engine(pair.source.location)) as engine, engine.connect() as source:
                for table, into in zip(_tables(pair.source), _tables(pair.target), strict=True):
                    conn.execute(delete(into))  # a new store's own rows (the taxonomy's head row)
                    copied.rows[table.name] = _copy_table(source, conn, table, into)
                    _reset_sequences(conn, into)
            done.append(copied)
            if report is not None:
                report(copied)
        index = _source_index(data_dir)
        if index is not None:
            generations = next(s for s in stores if s.schema is GENERATIONS)
            files, manifest = index.verified_files()
            published = _publish(dbs.conn(generations), files, manifest, url)
            copied = StoreCopy("generations", generations.where, {
                f"index generation {manifest.generation} -> {published.generation}, examples": published.count})
            done.append(copied)
            if report is not None:
                report(copied)
        dbs.commit()
    return done


def _publish(conn: Connection, files: dict[str, bytes], manifest: Manifest, url: str) -> Manifest:
    where = f"the database ({safe_url(url)})"
    return publish_copy(lambda build: publish_on(conn, build, base=None, where=where), files, manifest)


@contextlib.contextmanager
def _disposing(engine: Engine) -> Iterator[Engine]:
    try:
        yield engine
    finally:
        engine.dispose()


def _exists(store: Target) -> bool:
    if isinstance(store.location, Path):
        return store.location.exists()
    file = _file_of(store.location)
    if file is not None:
        return file.exists()
    if store.namespace is None:
        return True  # the database itself: the copy never creates or drops it
    with _disposing(open_engine(store.location)) as engine, engine.connect() as conn:
        return store.namespace in inspect(conn).get_schema_names()


def _remove(created: list[Target]) -> None:
    """What a failed copy created: taxonomy files beside a shared SQLite file, ``tax_*`` schemas."""
    for store in created:
        with contextlib.suppress(Exception):
            if isinstance(store.location, Path):
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(f"{store.location}{suffix}").unlink(missing_ok=True)
            elif store.namespace is not None:
                with _disposing(open_engine(store.location)) as engine, engine.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{store.namespace}" CASCADE'))


def _dry_run(settings: Settings, source: Settings, report: Callable[[StoreCopy], None] | None) -> list[StoreCopy]:
    """Rows per table of each source store and the index generation; CopyRefused when the
    target is not empty. Reads only (an old schema's missing tables count as empty)."""
    pairs = _pairs(settings, source)
    for store in [*targets(settings), *(p.target for p in pairs)]:
        if not _exists(store):
            continue
        with _disposing(open_engine(store.location)) as engine, engine.connect() as conn:
            occupied = _occupied(conn, store)
        if occupied is not None:
            raise _refuse(store, *occupied)
    done = []
    for pair in pairs:
        counted = StoreCopy(pair.target.label, pair.target.where)
        with _disposing(open_engine(pair.source.location)) as engine, engine.connect() as conn:
            existing = set(inspect(conn).get_table_names())
            for table in _tables(pair.source):
                if table.name in existing:
                    counted.rows[table.name] = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
        done.append(counted)
        if report is not None:
            report(counted)
    index = _source_index(source.data_dir)
    if index is not None:
        manifest = index.manifest()
        counted = StoreCopy("generations", safe_url(settings.database.url_value or ""),
                            {f"index generation {manifest.generation}, examples": manifest.count})
        done.append(counted)
        if report is not None:
            report(counted)
    return done

