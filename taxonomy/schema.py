"""Tables of the versioned store (SQLAlchemy Core), and the SQLite engine settings.

Append-only: a version row, its edit rows and its checkpoint are written once in the
transaction that also advances ``taxonomy_head``; nothing is updated afterwards except the
head. A reader that knows the head can read everything at or below it without locks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from taxonomy.migrations import SCHEMA_LOCK as SCHEMA_LOCK  # the schema lock, for stores' own DDL
from taxonomy.migrations import StoreSchema

metadata = MetaData()

head_table = Table(
    "taxonomy_head",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1: the single row everybody locks
    Column("version", Integer, nullable=False),
)

versions_table = Table(
    "taxonomy_versions",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),  # "import" or "edit"
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("author", String(200)),
    Column("message", Text),
    Column("base_version", Integer),  # the version the edits were made against
    Column("edit_count", Integer, nullable=False),
    Column("node_count", Integer, nullable=False),
    Column("active_count", Integer, nullable=False),
)

edits_table = Table(
    "taxonomy_edits",
    metadata,
    Column("version", Integer, ForeignKey("taxonomy_versions.version"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("edit", Text, nullable=False),  # the edit model as JSON
)

checkpoints_table = Table(
    "taxonomy_checkpoints",
    metadata,
    Column("version", Integer, ForeignKey("taxonomy_versions.version"), primary_key=True),
    Column("document", LargeBinary, nullable=False),  # gzip of the document's pydantic JSON
)


#: the store's schema: its history in taxonomy/migrations/versions/taxonomy/
SCHEMA = StoreSchema("taxonomy", metadata)

#: seconds a new PostgreSQL connection may take (libpq's connect_timeout)
PG_CONNECT_TIMEOUT_S = 10


def namespaced(engine: Engine, namespace: str) -> Engine:
    """``engine`` (the same connection pool) with every unqualified table in PostgreSQL schema
    ``namespace``, which is created if missing (under the schema advisory lock, so processes
    doing it together do not collide): several stores with the same table names in one
    database, e.g. the taxonomies a crosswalk maps to next to the tagging taxonomy. PostgreSQL
    only (SQLite keeps such stores in files of their own)."""
    if engine.dialect.name != "postgresql":
        raise ValueError(f"schemas per store need PostgreSQL, not {engine.dialect.name}")
    with engine.connect() as conn, conn.begin():
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{namespace}"'))
    return engine.execution_options(schema_translate_map={None: namespace})


def schema_exists(engine: Engine, namespace: str) -> bool:
    """Whether PostgreSQL schema ``namespace`` exists (:func:`namespaced`), creating nothing."""
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :name"), {"name": namespace}
        ).first()
    return found is not None


def make_engine(url: str) -> Engine:
    """An engine; SQLite gets WAL, ``synchronous=FULL``, a busy timeout and explicit BEGINs."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        # a connection checked before use (a restarted server's dead connections are replaced),
        # and a bounded connect: an unreachable database fails a request, never hangs it
        return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S})
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    database = parsed.database or ""
    in_memory = database in ("", ":memory:")
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    if in_memory:
        kwargs["poolclass"] = StaticPool
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling is off: we emit BEGIN ourselves (below), so a
        # writer can take the write lock up front (BEGIN IMMEDIATE) instead of upgrading
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged edit survives power loss
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine
