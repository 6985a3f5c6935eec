"""Schema migrations of every store (Alembic, driven from Python: no alembic.ini at run time).

Structure: **one Alembic history per store**, each with its own version table
(``alembic_version_<store>``) and its own scripts (``versions/<store>/``), applied to that
store's engine. Why per store and not one history for all: with ``database.url`` unset every
store is its own SQLite file (taxonomy.db, keys.db, …; one per named taxonomy too), so a store
must be upgradable alone, in its file, holding only its own version row; with a PostgreSQL URL
the same histories sit side by side in the one shared database, each version table naming
where its store stands. One history per store works unchanged in both.

Why here, at the bottom of the layout (``taxonomy ← retrieval ← … ← serve``): every store
ensures its own schema when it is opened (:func:`ensure_schema`: the service at start-up, the
CLI, a named taxonomy created on the fly, tests opening a store directly), including the
stores of ``taxonomy`` and ``retrieval``, which may not import ``serve``. The scripts use only
Alembic and SQLAlchemy, never a store's module. What composes the stores of a configuration
(``tagsmith db upgrade``/``current``, the start-up check) is ``serve/migrations.py``.

Databases made before migrations (by ``create_all`` and the stores' old "ADD COLUMN if
missing" steps): no version table, some of the store's tables. Each baseline revision adopts
them: it creates only the tables (and indexes) that are missing and adds the columns older
releases lacked, so upgrading such a database keeps every row, then records the baseline.

Serialised: an upgrade runs in one transaction, on PostgreSQL under a transaction-scoped
advisory lock (DDL is transactional there: replicas starting together upgrade once, the
others wait and find the head), on SQLite under the file's write lock (``BEGIN IMMEDIATE``).
A database at a revision this code does not know (written by a newer release) is refused
(:class:`SchemaTooNew`), never touched.

Adding a migration: docs/migrations.md (``tagsmith db revision STORE -m "…" --autogenerate``).
"""

from __future__ import annotations

import functools
import io
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, inspect, text
from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
VERSIONS = HERE / "versions"
#: the PostgreSQL advisory lock under which schemas change (any constant; "tgsm")
SCHEMA_LOCK = 0x7467736D
VERSION_TABLE_PREFIX = "alembic_version_"
#: Alembic's ``context`` and ``op`` are process-wide proxies: one migration run at a time per
#: process (taken after a database's schema lock, never before, so no thread waits for a
#: database lock while holding this one)
_ALEMBIC = threading.Lock()
_SCRIPTS = threading.Lock()


@dataclass(frozen=True)
class StoreSchema:
    """A store's schema: ``name`` picks its scripts (``versions/<name>/``) and version table;
    ``metadata``: its tables as the code uses them (for autogenerate, the drift check, and to
    recognise a database made before migrations). Declared beside the store's tables."""

    name: str
    metadata: MetaData

    def __post_init__(self) -> None:
        _REGISTRY[self.name] = self

    @property
    def version_table(self) -> str:
        return VERSION_TABLE_PREFIX + self.name

    @property
    def versions_dir(self) -> Path:
        return VERSIONS / self.name


_REGISTRY: dict[str, StoreSchema] = {}


class SchemaError(Exception):
    """The database's schema does not fit this code; the message says what to do."""


class SchemaTooNew(SchemaError):
    def __init__(self, store: str, current: str, head: str) -> None:
        self.store, self.current, self.head = store, current, head
        super().__init__(
            f"the {store} store is at schema revision {current}, newer than this tagsmith knows "
            f"(its newest: {head}): the database was upgraded by a newer release; run that release, "
            "or restore the backup taken before the upgrade"
        )


class UpgradePending(SchemaError):
    def __init__(self, store: str, current: str | None, head: str) -> None:
        self.store, self.current, self.head = store, current, head
        super().__init__(
            f"the {store} store's schema is at {current or 'no revision'}, this tagsmith needs {head} "
            "(database.auto_upgrade is off): run `tagsmith db upgrade`"
        )


@dataclass(frozen=True)
class SchemaState:
    """Where a store's schema stands. ``current``: its revision (None: no version table);
    ``legacy``: no version table but tables of the store (made before migrations);
    ``known``: ``current`` is one of this code's revisions."""

    store: str
    current: str | None
    head: str
    legacy: bool
    known: bool

    @property
    def pending(self) -> bool:
        return self.known and self.current != self.head

    def describe(self) -> str:
        if self.current is not None:
            return self.current
        return "pre-migrations (no version table)" if self.legacy else "empty"


# ---- scripts --------------------------------------------------------------------------------
def config(schema: StoreSchema, **attributes: Any) -> Config:
    """The Alembic configuration of ``schema``'s history (no ini file); ``attributes`` reach
    env.py (``connection``, or ``url`` for offline SQL)."""
    cfg = Config(output_buffer=attributes.pop("output_buffer", None))
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(schema.versions_dir))
    cfg.attributes["schema"] = schema
    cfg.attributes.update(attributes)
    return cfg


@functools.cache
def _script(name: str) -> ScriptDirectory:
    with _SCRIPTS:  # read once per process, the revision map loaded before it is shared
        script = ScriptDirectory(str(HERE), version_locations=[str(VERSIONS / name)])
        script.get_current_head()
        return script


def head(schema: StoreSchema) -> str:
    """The newest revision this code knows for ``schema``."""
    rev = _script(schema.name).get_current_head()
    assert rev is not None, f"no migrations for store {schema.name}"
    return rev


@functools.cache
def _known(name: str) -> frozenset[str]:
    return frozenset(r.revision for r in _script(name).walk_revisions())


# ---- reading --------------------------------------------------------------------------------
def namespace(conn: Connection) -> str | None:
    """The PostgreSQL schema a store's unqualified tables go to on this connection (an engine
    with ``schema_translate_map={None: "…"}``: several stores with the same table names in
    one database); None: the default schema. Its version table lives there too."""
    translate = conn.get_execution_options().get("schema_translate_map") or {}
    found = translate.get(None)
    return str(found) if found else None


def _current(conn: Connection, schema: StoreSchema) -> str | None:
    ctx = MigrationContext.configure(conn, opts={
        "version_table": schema.version_table, "version_table_schema": namespace(conn),
    })
    heads = ctx.get_current_heads()
    return heads[0] if heads else None


def _state(conn: Connection, schema: StoreSchema) -> SchemaState:
    current = _current(conn, schema)
    legacy = False
    if current is None:
        tables = set(inspect(conn).get_table_names(schema=namespace(conn)))
        legacy = bool(tables & set(schema.metadata.tables))
    return SchemaState(schema.name, current, head(schema), legacy,
                       current is None or current in _known(schema.name))


def state(engine: Engine, schema: StoreSchema) -> SchemaState:
    with engine.connect() as conn:
        return _state(conn, schema)


# ---- changing -------------------------------------------------------------------------------
@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """One transaction holding the schema lock: SQLite's write lock taken at BEGIN (a deferred
    transaction that read "no table" could not upgrade to a writer once another process has
    created it); PostgreSQL's advisory lock, released at commit or rollback."""
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        yield conn


def upgrade(engine: Engine, schema: StoreSchema) -> tuple[SchemaState, SchemaState]:
    """Bring ``schema``'s tables in ``engine`` to the head (adopting a database made before
    migrations), serialised with every other upgrader; (before, after). SchemaTooNew when the
    database is ahead of this code (nothing is changed)."""
    with _locked(engine) as conn:
        before = _state(conn, schema)
        if not before.known:
            raise SchemaTooNew(schema.name, str(before.current), before.head)
        if before.current != before.head:
            with _ALEMBIC:
                command.upgrade(config(schema, connection=conn), "head")
        after = _state(conn, schema)
    if before.current != after.current:
        log.info("schema of the %s store upgraded: %s -> %s", schema.name, before.describe(), after.current)
    return before, after


def ensure_schema(engine: Engine, schema: StoreSchema, *, upgrade_allowed: bool = True) -> None:
    """What a store calls when it is opened: nothing when the schema is at the head (one read
    of the version table); else upgrade it, or raise UpgradePending when ``upgrade_allowed`` is
    off (``database.auto_upgrade = false``); SchemaTooNew for a database ahead of this code."""
    now = state(engine, schema)
    if now.current == now.head:
        return
    if not now.known:
        raise SchemaTooNew(schema.name, str(now.current), now.head)
    if not upgrade_allowed:
        raise UpgradePending(schema.name, now.current, now.head)
    upgrade(engine, schema)


def upgrade_sql(url: str, schema: StoreSchema, start: str | None) -> str:
    """The SQL that brings ``schema`` from ``start`` (None: an empty database) to the head,
    without connecting (Alembic's offline mode), for an operator to review or apply."""
    out = io.StringIO()
    target = f"{start}:head" if start is not None else "head"
    with _ALEMBIC:
        command.upgrade(config(schema, url=url, output_buffer=out), target, sql=True)
    return out.getvalue()


# ---- comparing (drift check, autogenerate) ----------------------------------------------------
def include_name(schema: StoreSchema) -> Any:
    """Alembic's ``include_name`` hook for ``schema``: its tables and unknown ones, not the
    version tables nor the other stores' tables (which share a PostgreSQL database)."""
    others = {t for s in _REGISTRY.values() if s.name != schema.name for t in s.metadata.tables}
    own = set(schema.metadata.tables)

    def include(name: str | None, type_: str, _parent: Any) -> bool:
        if type_ != "table" or name is None:
            return True
        return name in own or not (name.startswith(VERSION_TABLE_PREFIX) or name in others)

    return include


def drift(conn: Connection, schema: StoreSchema, metadata: MetaData | None = None) -> list[Any]:
    """What autogenerate would change to make the database match ``schema.metadata`` (or
    ``metadata``, a changed copy) (empty: the migrations and the code agree)."""
    ctx = MigrationContext.configure(conn, opts={
        "version_table": schema.version_table, "include_name": include_name(schema), "compare_type": True,
    })
    diffs: list[Any] = compare_metadata(ctx, metadata if metadata is not None else schema.metadata)
    return diffs


# ---- helpers for baseline scripts ------------------------------------------------------------
def _existing(kind: str, table: str) -> set[str]:
    from alembic import context, op

    if context.is_offline_mode():
        return set()
    bind = op.get_bind()
    inspector, where = inspect(bind), namespace(bind)
    if kind == "tables":
        return set(inspector.get_table_names(schema=where))
    if kind == "columns":
        return {c["name"] for c in inspector.get_columns(table, schema=where)}
    return {i["name"] for i in inspector.get_indexes(table, schema=where) if i["name"]}


def adopt_table(name: str, *elements: Any, indexes: Sequence[tuple[str, Sequence[str], bool]] = ()) -> bool:
    """Create table ``name`` unless it exists (a database made before migrations), then its
    ``indexes`` (name, columns, unique) that are missing; True when the table was created."""
    from alembic import op

    created = name not in _existing("tables", name)
    if created:
        op.create_table(name, *elements)
    have = set() if created else _existing("indexes", name)
    for index, columns, unique in indexes:
        if index not in have:
            op.create_index(index, name, list(columns), unique=unique)
    return created


def adopt_column(table: str, column: Any) -> None:
    """Add ``column`` to ``table`` unless it is there (a column an older release lacked)."""
    from alembic import context, op

    if context.is_offline_mode():
        return  # offline SQL starts from an empty database: the table was created with it
    if column.name not in _existing("columns", table):
        op.add_column(table, column)
