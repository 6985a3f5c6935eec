"""Index generations in a database (``database.url``): every replica publishes into and loads
from the same rows, so a feedback example posted to one replica reaches the others' indexes.

Three tables: ``index_generations`` (number, the manifest's sha256: the commit record),
``index_files`` (number, file name, the sha256 of its bytes) and ``index_blobs`` (sha256, the
bytes: ``bytea`` on PostgreSQL, a BLOB on SQLite). Blobs are content-addressed, so a
generation that republishes a file unchanged (the lexical classifier of a big index after a
feedback example: most of a generation's bytes) stores it once. A publication inserts the
missing blobs, the file rows and the generation row and deletes old generations (and the
blobs no generation uses any more) in one transaction, under a transaction-scoped advisory lock on PostgreSQL (SQLite: its write
lock, ``BEGIN IMMEDIATE``): the transaction's commit is the switch, so a reader sees the
previous generation or the new one, complete, never a part. The current generation is the
highest number. Readers take no lock; one that loses a generation to the clean-up
mid-read (it is two publications old by then) reads the current one
(:meth:`retrieval.store.IndexStore.load_bundle`). Checksums are the store's, as for files.

Why rows rather than a shared directory: docs/deploy.md (measured in docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
    text,
)

from retrieval.errors import StaleGenerationError
from retrieval.generations import ANY, MANIFEST, AnyBase, generation_name
from taxonomy.migrations import StoreSchema, ensure_schema

metadata = MetaData()
generations_table = Table(
    "index_generations",
    metadata,
    Column("number", Integer, primary_key=True, autoincrement=False),
    Column("manifest_sha256", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
)
files_table = Table(
    "index_files",
    metadata,
    Column("number", Integer, primary_key=True, autoincrement=False),
    Column("name", String(200), primary_key=True),
    Column("sha256", String(64), nullable=False, index=True),
)
blobs_table = Table(
    "index_blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("data", LargeBinary, nullable=False),
)
#: the store's schema: its history in taxonomy/migrations/versions/generations/
SCHEMA = StoreSchema("generations", metadata)

#: the PostgreSQL advisory lock serialising publications ("tidx")
PUBLISH_LOCK = 0x74696478


def _number(generation: str) -> int | None:
    head, _, digits = generation.partition("-")
    return int(digits) if head == "gen" and digits.isdigit() else None


# psycopg passes bytes as escaped text (twice the size, escaped and unescaped on both sides)
# unless asked for PostgreSQL's binary format, which SQLAlchemy does not ask for: blobs go
# through the driver's cursor, in the same connection and transaction
def _insert_binary(conn: Connection, digest: str, data: bytes) -> None:
    with conn.connection.driver_connection.cursor() as cur:  # type: ignore[union-attr]
        cur.execute("INSERT INTO index_blobs (sha256, data) VALUES (%s, %b)", (digest, data))


def _read_binary(conn: Connection, number: int | None, name: str) -> bytes | None:
    with conn.connection.driver_connection.cursor(binary=True) as cur:  # type: ignore[union-attr]
        cur.execute("SELECT b.data FROM index_files f JOIN index_blobs b ON f.sha256 = b.sha256 "
                    "WHERE f.number = %s AND f.name = %s", (number, name))
        row = cur.fetchone()
    return None if row is None else bytes(row[0])


class DatabaseGenerations:
    """A :class:`retrieval.generations.GenerationBackend` over ``engine`` (the caller's)."""

    def __init__(self, engine: Engine, where: str = "the database") -> None:
        self._engine = engine
        self._where = where
        ensure_schema(engine, SCHEMA)  # created or upgraded (taxonomy/migrations)

    def describe(self) -> str:
        return self._where

    def close(self) -> None:
        self._engine.dispose()

    def current(self) -> tuple[str, str] | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(generations_table.c.number, generations_table.c.manifest_sha256)
                .order_by(generations_table.c.number.desc()).limit(1)
            ).first()
        return None if row is None else (generation_name(row[0]), row[1])

    def read(self, generation: str, name: str) -> bytes:
        number = _number(generation)
        f, b = files_table, blobs_table
        with self._engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                data = _read_binary(conn, number, name)
            else:
                data = conn.execute(
                    select(b.c.data).select_from(f.join(b, f.c.sha256 == b.c.sha256))
                    .where(f.c.number == number, f.c.name == name)
                ).scalar()
        if data is None:
            raise FileNotFoundError(f"{generation}/{name}")
        return bytes(data)

    def generations(self) -> list[str]:
        with self._engine.connect() as conn:
            numbers = conn.execute(select(generations_table.c.number).order_by(generations_table.c.number)).scalars()
            return [generation_name(n) for n in numbers]

    def publish(
        self, build: Callable[[str], Mapping[str, bytes]], *, base: str | AnyBase | None = ANY, keep: int = 2
    ) -> str:
        with self._engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
            return publish_on(conn, build, base=base, keep=keep, where=self._where)


def publish_on(
    conn: Connection, build: Callable[[str], Mapping[str, bytes]], *, base: str | AnyBase | None = ANY,
    keep: int = 2, where: str = "the database",
) -> str:
    """A publication (:meth:`DatabaseGenerations.publish`) inside the caller's transaction on
    ``conn`` (committed with it): ``tagsmith db copy`` moves a data directory's generation in
    the same transaction as every other row (serve/db_copy.py)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PUBLISH_LOCK})
    last = conn.execute(select(generations_table.c.number).order_by(generations_table.c.number.desc()).limit(1)).scalar()
    current = None if last is None else generation_name(last)
    if base is not ANY and current != base:
        raise StaleGenerationError(f"{where}: {current} is current, not {base}")
    number = (last or 0) + 1
    files = build(generation_name(number))
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    stored = set(conn.execute(select(blobs_table.c.sha256).where(
        blobs_table.c.sha256.in_(set(digests.values())))).scalars())
    missing = {digests[name]: data for name, data in files.items() if digests[name] not in stored}
    for digest, data in missing.items():  # one at a time: a statement holds one blob's bytes
        if conn.dialect.name == "postgresql":
            _insert_binary(conn, digest, data)
        else:
            conn.execute(insert(blobs_table).values(sha256=digest, data=data))
    conn.execute(insert(files_table), [{"number": number, "name": n, "sha256": d} for n, d in digests.items()])
    conn.execute(insert(generations_table).values(
        number=number, manifest_sha256=digests[MANIFEST], created_at=time.time(),
    ))
    kept = max(keep, 2)  # the current and the previous one, at least
    conn.execute(delete(files_table).where(files_table.c.number <= number - kept))
    conn.execute(delete(generations_table).where(generations_table.c.number <= number - kept))
    conn.execute(delete(blobs_table).where(blobs_table.c.sha256.not_in(select(files_table.c.sha256))))
    return generation_name(number)
