"""The versioned crosswalk store: every import and every row edit of a crosswalk is a new
version, written in one transaction (SQLite or PostgreSQL, as the taxonomy store).

A version row holds the whole crosswalk (gzipped JSON: the 10,252 rows of Shopify's Google
mapping take ~60 KB) and the versions of the source and target taxonomies it was checked
against; ``crosswalk_heads`` names each crosswalk's current version. Nothing is updated
afterwards except the head, so any version stays readable. A write names the version it was
made against (``expected_version``); another writer's commit in between makes it stale.
"""

from __future__ import annotations

import gzip
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from taxonomy.crosswalk import Crosswalk, CrosswalkDocument, CrosswalkVersionInfo, check_name
from taxonomy.errors import StaleVersion
from taxonomy.migrations import StoreSchema, ensure_schema
from taxonomy.model import paused_gc
from taxonomy.schema import make_engine

metadata = MetaData()

heads_table = Table(
    "crosswalk_heads",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
)

crosswalk_versions_table = Table(
    "crosswalk_versions",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),  # "import" or "edit"
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("author", String(200)),
    Column("message", Text),
    Column("source_version", Integer, nullable=False),
    Column("target_version", Integer, nullable=False),
    Column("row_count", Integer, nullable=False),
    Column("document", LargeBinary, nullable=False),  # gzip of the CrosswalkDocument's JSON
)

#: the store's schema: its history in taxonomy/migrations/versions/crosswalks/
SCHEMA = StoreSchema("crosswalks", metadata)

_INFO_COLUMNS = [c for c in crosswalk_versions_table.c if c.name != "document"]


class UnknownCrosswalk(LookupError):
    """No crosswalk of that name (or no such version of it)."""


class CrosswalkStore:
    def __init__(self, url: str | Engine, *, cache_size: int = 8) -> None:
        """``url``: a database URL (this store makes and disposes its engine), or an engine
        shared with other stores (left open at close)."""
        self._owns_engine = isinstance(url, str)
        self._engine = make_engine(url) if isinstance(url, str) else url
        self.url = url if isinstance(url, str) else self._engine.url.render_as_string(hide_password=True)
        self._sqlite = self._engine.dialect.name == "sqlite"
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, int], Crosswalk] = OrderedDict()
        self._cache_size = cache_size
        ensure_schema(self._engine, SCHEMA)  # created or upgraded (taxonomy/migrations)

    # ---- reading ------------------------------------------------------------------------
    def heads(self) -> dict[str, int]:
        """Every crosswalk's name → its current version."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(heads_table).order_by(heads_table.c.name)).all()
        return {str(r.name): int(r.version) for r in rows}

    def head(self, name: str) -> int:
        """The current version of ``name``; 0 when there is no such crosswalk."""
        with self._engine.connect() as conn:
            value = conn.execute(select(heads_table.c.version).where(heads_table.c.name == name)).scalar()
        return 0 if value is None else int(value)

    def get(self, name: str, version: int | None = None) -> Crosswalk:
        """A version of ``name`` (default: the current one); cached, immutable."""
        if version is None:
            version = self.head(name)
            if version == 0:
                raise UnknownCrosswalk(f"no crosswalk {name!r}")
        key = (name, version)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        with self._engine.connect() as conn:
            row = conn.execute(
                select(crosswalk_versions_table).where(
                    crosswalk_versions_table.c.name == name, crosswalk_versions_table.c.version == version
                )
            ).mappings().first()
        if row is None:
            raise UnknownCrosswalk(f"no version {version} of crosswalk {name!r}")
        info = CrosswalkVersionInfo.model_validate({k: v for k, v in row.items() if k != "document"})
        with paused_gc():
            document = CrosswalkDocument.model_validate_json(gzip.decompress(row["document"]))
        crosswalk = Crosswalk(info, document)
        with self._lock:
            self._cache[key] = crosswalk
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return crosswalk

    def versions(self, name: str) -> list[CrosswalkVersionInfo]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(*_INFO_COLUMNS).where(crosswalk_versions_table.c.name == name)
                .order_by(crosswalk_versions_table.c.version)
            ).mappings().all()
        if not rows:
            raise UnknownCrosswalk(f"no crosswalk {name!r}")
        return [CrosswalkVersionInfo.model_validate(dict(r)) for r in rows]

    # ---- writing ------------------------------------------------------------------------
    def commit(
        self,
        name: str,
        document: CrosswalkDocument,
        *,
        kind: Literal["import", "edit"],
        source_version: int,
        target_version: int,
        expected_version: int | None,
        author: str | None = None,
        message: str | None = None,
    ) -> Crosswalk:
        """Store ``document`` as the next version of ``name``, atomically. ``expected_version``:
        the version the change was made against (0 for a new crosswalk; None: whatever is
        current). Raises :class:`StaleVersion` when another writer committed since."""
        check_name(name)
        blob = gzip.compress(document.model_dump_json().encode("utf-8"), compresslevel=6)
        conn = self._engine.connect()
        if self._sqlite:
            conn.execution_options(sqlite_begin="IMMEDIATE")  # take the write lock up front
        try:
            with conn, conn.begin():
                current = conn.execute(
                    select(heads_table.c.version).where(heads_table.c.name == name).with_for_update()
                ).scalar()
                head = 0 if current is None else int(current)
                if expected_version is not None and expected_version != head:
                    raise StaleVersion(expected_version, head)
                version = head + 1
                created = datetime.now(UTC)
                conn.execute(insert(crosswalk_versions_table).values(
                    name=name, version=version, kind=kind, created_at=created, author=author,
                    message=message, source_version=source_version, target_version=target_version,
                    row_count=len(document.rows), document=blob,
                ))
                if current is None:
                    conn.execute(insert(heads_table).values(name=name, version=version))
                else:
                    conn.execute(update(heads_table).where(heads_table.c.name == name).values(version=version))
        except IntegrityError as exc:  # another process created the same crosswalk at once
            raise StaleVersion(expected_version or 0, self.head(name)) from exc
        info = CrosswalkVersionInfo(
            name=name, version=version, kind=kind, created_at=created, author=author, message=message,
            source_version=source_version, target_version=target_version, row_count=len(document.rows),
        )
        crosswalk = Crosswalk(info, document)
        with self._lock:
            self._cache[(name, version)] = crosswalk
        return crosswalk

    def close(self) -> None:
        if self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> CrosswalkStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
