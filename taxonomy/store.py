"""The versioned taxonomy store: an edit log with checkpoints, in SQLite or PostgreSQL.

Every import and every edit batch is one transaction that appends a version and advances
the head row; it is acknowledged (the call returns) only after commit. Imports write a full
checkpoint; edit batches write their edits, plus a checkpoint every ``checkpoint_every``
versions, so opening replays at most that many batches on top of the nearest checkpoint.

Readers call :meth:`current` (a plain attribute read of an immutable snapshot); writers build
the next snapshot aside and publish it with one reference swap. Other processes and
replicas pick up newer versions with :meth:`refresh`.
"""

from __future__ import annotations

import gzip
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, Engine, func, insert, select, update

from taxonomy.diff import TaxonomyDiff, diff_snapshots, migration_map, value_migration_map
from taxonomy.editor import apply_edits, coerce_edits
from taxonomy.edits import EDIT_LIST, Edit
from taxonomy.errors import EditRejected, EmptyStore, StaleVersion, TaxonomyError, UnknownVersion
from taxonomy.formats import read_document
from taxonomy.migrations import ensure_schema
from taxonomy.model import TaxonomyDocument, paused_gc
from taxonomy.schema import (
    SCHEMA,
    checkpoints_table,
    edits_table,
    head_table,
    make_engine,
    versions_table,
)
from taxonomy.snapshot import Snapshot

#: how often an ``expected_version=None`` batch re-applies when other processes keep committing
#: (each loss means another writer committed, so the service as a whole progresses; the bound
#: and the jittered pause after a loss keep one writer from starving behind busy replicas)
_ANY_VERSION_ATTEMPTS = 100


class VersionInfo(BaseModel):
    version: int
    kind: str
    created_at: datetime
    author: str | None
    message: str | None
    base_version: int | None
    edit_count: int
    node_count: int
    active_count: int


#: Old versions kept in memory, counted in nodes + attribute values. Measured (2 cores,
#: 2026-11-30, each version decoded from its own checkpoint, the worst case): a category node
#: costs ~2.0 KB, an attribute value ~1.2 KB; the packaged default (10,281 nodes + 16,821
#: values = 27,102) 40.5 MB a version, the categories alone 19.8 MB. So 100,000 keeps 3 old
#: versions of the default (~122 MB), 9 of the categories alone (~178 MB): at most ~200 MB
#: whatever the taxonomy. Not raised for the attributes: a diff or a migration map needs two
#: old versions at once, the current one is held outside this budget, and a version replayed
#: from a cached neighbour shares its unchanged nodes (~8 MB, not 40). At least the most
#: recent one is always kept.
HISTORY_BUDGET = 100_000
#: (from, to) results of diff and migration_map kept: small next to a snapshot (lists of ids)
COMPARISON_CACHE = 32


def _weight(snapshot: Snapshot) -> int:
    return len(snapshot) + sum(len(a.values) for a in snapshot.attributes.values())


class TaxonomyStore:
    def __init__(
        self, url: str | Engine, *, checkpoint_every: int = 50, history_budget: int = HISTORY_BUDGET,
        comparison_cache: int = COMPARISON_CACHE,
    ) -> None:
        """``url``: a database URL (this store makes and disposes its engine), or an engine
        shared with others (e.g. :func:`taxonomy.schema.namespaced`; left open at close)."""
        self._owns_engine = isinstance(url, str)
        self._engine = make_engine(url) if isinstance(url, str) else url
        self.url = url if isinstance(url, str) else self._engine.url.render_as_string(hide_password=True)
        self.checkpoint_every = max(1, checkpoint_every)
        self._sqlite = self._engine.dialect.name == "sqlite"
        self._lock = threading.RLock()  # writers and refreshers; readers never take it
        self._current: Snapshot | None = None
        # Old versions and comparisons: immutable once committed, so cached without expiry.
        # One small lock guards the caches; builds run outside it (and outside the writers'
        # lock), one at a time per key, so a slow rebuild never holds up edits or other reads.
        self._cache_lock = threading.Lock()
        self._history: OrderedDict[int, Snapshot] = OrderedDict()
        self._history_budget = history_budget
        self._comparisons: OrderedDict[tuple[str, int, int], Any] = OrderedDict()
        self._comparison_cache = comparison_cache
        self._inflight: dict[object, threading.Lock] = {}
        ensure_schema(self._engine, SCHEMA)  # created or upgraded (taxonomy/migrations)
        self.refresh()

    # ---- reading ------------------------------------------------------------------------
    def current(self) -> Snapshot:
        """The latest snapshot this process knows (no database access)."""
        snapshot = self._current
        if snapshot is None:
            raise EmptyStore(f"the taxonomy store {self._safe_url()} is empty: import a taxonomy first")
        return snapshot

    @property
    def version(self) -> int:
        """The version of :meth:`current`; 0 while the store is empty."""
        snapshot = self._current
        return 0 if snapshot is None else snapshot.version

    def is_empty(self) -> bool:
        return self.head_version() == 0

    def head_version(self) -> int:
        """The newest committed version in the database (one query)."""
        with self._engine.connect() as conn:
            return self._read_head(conn)

    def refresh(self) -> int:
        """Load the newest committed version if another writer added one; returns the version."""
        with self._lock:
            with self._engine.connect() as conn, conn.begin():
                head = self._read_head(conn)
                base = self._current
                if head == 0 or (base is not None and base.version >= head):
                    return self.version
                snapshot = self._build(conn, head, base)
            self._publish(snapshot)
            return snapshot.version

    def snapshot(self, version: int) -> Snapshot:
        """Any committed version (rebuilt from the nearest cached version or checkpoint and
        the edit log, then cached)."""
        current = self._current
        if current is not None and current.version == version:
            return current
        cached = self.cached_snapshot(version)
        if cached is not None:
            return cached
        with self._single_flight(("snapshot", version)):
            cached = self.cached_snapshot(version)  # built by the caller we waited for
            if cached is not None:
                return cached
            with self._engine.connect() as conn, conn.begin():
                if version < 1 or version > self._read_head(conn):
                    raise UnknownVersion(version)
                snapshot = self._build(conn, version, self._nearest_below(version))
            self._remember(snapshot)
            return snapshot

    def cached_snapshot(self, version: int) -> Snapshot | None:
        """``version`` if it is in memory (the current one or a cached old one), else None:
        callers that must bound expensive work ask before calling :meth:`snapshot`."""
        current = self._current
        if current is not None and current.version == version:
            return current
        with self._cache_lock:
            cached = self._history.get(version)
            if cached is not None:
                self._history.move_to_end(version)
            return cached

    def versions(self) -> list[VersionInfo]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(versions_table).order_by(versions_table.c.version)).mappings()
            return [VersionInfo.model_validate(dict(r)) for r in rows]

    def version_info(self, version: int) -> VersionInfo:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(versions_table).where(versions_table.c.version == version)
            ).mappings().first()
        if row is None:
            raise UnknownVersion(version)
        return VersionInfo.model_validate(dict(row))

    def edits(self, version: int) -> list[Edit]:
        """The edits that made ``version`` (empty for an import)."""
        self.version_info(version)
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(edits_table.c.edit).where(edits_table.c.version == version).order_by(edits_table.c.seq)
            ).scalars().all()
        return EDIT_LIST.validate_json("[" + ",".join(rows) + "]")

    def diff(self, v1: int, v2: int) -> TaxonomyDiff:
        """What changed from ``v1`` to ``v2`` (cached per pair; do not mutate the result)."""
        diff: TaxonomyDiff = self._compare("diff", v1, v2, diff_snapshots)
        return diff

    def migration_map(self, v_from: int, v_to: int) -> dict[str, str | None]:
        """Where tags of ``v_from`` move to in ``v_to`` (cached per pair; a fresh dict each call)."""
        return dict(self._migration_maps(v_from, v_to)[0])

    def value_migration_map(self, v_from: int, v_to: int) -> dict[str, dict[str, str | None]]:
        """Where attribute values of ``v_from`` move to in ``v_to`` (see
        :func:`taxonomy.diff.value_migration_map`); computed and cached with :meth:`migration_map`."""
        return {k: dict(v) for k, v in self._migration_maps(v_from, v_to)[1].items()}

    def _migration_maps(
        self, v_from: int, v_to: int
    ) -> tuple[dict[str, str | None], dict[str, dict[str, str | None]]]:
        def both(old: Snapshot, new: Snapshot) -> tuple[dict[str, str | None], dict[str, dict[str, str | None]]]:
            return migration_map(old, new), value_migration_map(old, new)

        maps: tuple[dict[str, str | None], dict[str, dict[str, str | None]]] = self._compare(
            "migration_map", v_from, v_to, both
        )
        return maps

    def cached_comparison(self, kind: str, v1: int, v2: int) -> bool:
        """Whether :meth:`diff` (``kind="diff"``) or :meth:`migration_map` of the pair would
        be answered from memory, without rebuilding or comparing anything."""
        with self._cache_lock:
            return (kind, v1, v2) in self._comparisons

    # ---- writing ------------------------------------------------------------------------
    def apply(
        self,
        edits: Iterable[Edit | Mapping[str, Any]],
        *,
        expected_version: int | None,
        author: str | None = None,
        message: str | None = None,
    ) -> Snapshot:
        """Apply an edit batch made against ``expected_version``; all or nothing.

        ``expected_version=None`` (HTTP ``If-Match: *``) applies the batch to whatever version
        is current when it commits: concurrent such batches are serialised, never refused as
        stale. Raises :class:`StaleVersion` when a named version is no longer current,
        :class:`EditRejected` when an edit is invalid against the version it is applied to.
        Returns the new snapshot (its base is ``version - 1``) once the batch is committed.
        """
        batch = coerce_edits(edits)
        payload = [e.model_dump_json() for e in batch]
        with self._lock:
            # the lock serialises this process's writers; another process (the CLI, a
            # replica) can still commit between our refresh and our commit: a named version
            # is then stale, while "any version" just re-applies on the newer head
            for _ in range(_ANY_VERSION_ATTEMPTS):
                self.refresh()
                current = self.current()
                if expected_version is not None and expected_version != current.version:
                    raise StaleVersion(expected_version, current.version)
                snapshot = apply_edits(current, batch, current.version + 1)
                try:
                    self._commit(snapshot, "edit", current.version, payload, author, message)
                except StaleVersion:
                    if expected_version is not None:
                        raise
                    time.sleep(random.uniform(0.0, 0.005))  # let the winner's next batch go first
                    continue
                return snapshot
            raise StaleVersion(current.version, self.head_version())

    def import_document(
        self,
        document: TaxonomyDocument,
        *,
        expected_version: int | None = None,
        author: str | None = None,
        message: str | None = None,
    ) -> Snapshot:
        """Store a whole taxonomy as a new version (``expected_version``: optimistic check)."""
        try:
            snapshot = Snapshot(document)
        except TaxonomyError as exc:
            raise EditRejected("invalid_taxonomy", str(exc)) from exc
        return self.import_snapshot(snapshot, expected_version=expected_version, author=author, message=message)

    def import_snapshot(
        self,
        snapshot: Snapshot,
        *,
        expected_version: int | None = None,
        author: str | None = None,
        message: str | None = None,
    ) -> Snapshot:
        with self._lock:
            self.refresh()
            base = self.version
            if expected_version is not None and expected_version != base:
                raise StaleVersion(expected_version, base)
            new = snapshot.with_version(base + 1)
            self._commit(new, "import", base, [], author, message)
            return new

    def import_taxonomy(
        self, path: str | Path, format: str = "json", **kwargs: Any
    ) -> Snapshot:
        return self.import_document(read_document(path, format), **kwargs)

    def close(self) -> None:
        if self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> TaxonomyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- internals ----------------------------------------------------------------------
    def _read_head(self, conn: Connection) -> int:
        return int(conn.execute(select(head_table.c.version).where(head_table.c.id == 1)).scalar_one())

    def _commit(
        self, snapshot: Snapshot, kind: str, base: int, edits: Sequence[str],
        author: str | None, message: str | None,
    ) -> None:
        conn = self._engine.connect()
        if self._sqlite:
            conn.execution_options(sqlite_begin="IMMEDIATE")  # take the write lock up front
        with conn, conn.begin():
            head = int(conn.execute(
                select(head_table.c.version).where(head_table.c.id == 1).with_for_update()
            ).scalar_one())
            if head != base:
                raise StaleVersion(base, head)  # another process committed since we read
            version = snapshot.version
            conn.execute(update(head_table).where(head_table.c.id == 1).values(version=version))
            conn.execute(insert(versions_table).values(
                version=version, kind=kind, created_at=datetime.now(UTC), author=author,
                message=message, base_version=base if kind == "edit" else None,
                edit_count=len(edits), node_count=len(snapshot), active_count=len(snapshot.active_ids),
            ))
            if edits:
                conn.execute(insert(edits_table), [
                    {"version": version, "seq": i, "edit": e} for i, e in enumerate(edits)
                ])
            last_checkpoint = conn.execute(select(func.max(checkpoints_table.c.version))).scalar()
            if kind == "import" or last_checkpoint is None or version - last_checkpoint >= self.checkpoint_every:
                conn.execute(insert(checkpoints_table).values(
                    version=version, document=_pack(snapshot.document)
                ))
        self._publish(snapshot)

    def _build(self, conn: Connection, version: int, base: Snapshot | None) -> Snapshot:
        """Snapshot ``version``: from ``base`` if no checkpoint lies in between, else from the
        latest checkpoint at or below it; edits in between are replayed in one pass."""
        checkpoint = conn.execute(
            select(func.max(checkpoints_table.c.version)).where(checkpoints_table.c.version <= version)
        ).scalar()
        if base is None or base.version > version or (checkpoint is not None and checkpoint > base.version):
            if checkpoint is None:
                raise UnknownVersion(version)
            blob = conn.execute(
                select(checkpoints_table.c.document).where(checkpoints_table.c.version == checkpoint)
            ).scalar_one()
            base = Snapshot(_unpack(blob), checkpoint)
        if base.version == version:
            return base
        rows = conn.execute(
            select(edits_table.c.edit)
            .where(edits_table.c.version > base.version, edits_table.c.version <= version)
            .order_by(edits_table.c.version, edits_table.c.seq)
        ).scalars().all()
        edits = EDIT_LIST.validate_json("[" + ",".join(rows) + "]")
        try:
            return apply_edits(base, edits, version)
        except EditRejected as exc:  # the log was valid when written: this is corruption
            raise TaxonomyError(f"edit log does not replay at version {version}: {exc}") from exc

    def _compare(self, kind: str, v1: int, v2: int, compute: Callable[[Snapshot, Snapshot], Any]) -> Any:
        key = (kind, v1, v2)
        with self._cache_lock:
            if key in self._comparisons:
                self._comparisons.move_to_end(key)
                return self._comparisons[key]
        with self._single_flight(key):
            with self._cache_lock:
                if key in self._comparisons:
                    return self._comparisons[key]
            result = compute(self.snapshot(v1), self.snapshot(v2))
            with self._cache_lock:
                self._comparisons[key] = result
                while len(self._comparisons) > self._comparison_cache:
                    self._comparisons.popitem(last=False)
            return result

    @contextmanager
    def _single_flight(self, key: object) -> Iterator[None]:
        """One computation per key at a time: concurrent callers of the same old version or
        comparison wait for the first one and then find its result cached."""
        with self._cache_lock:
            lock = self._inflight.setdefault(key, threading.Lock())
        with lock:
            try:
                yield
            finally:
                with self._cache_lock:
                    self._inflight.pop(key, None)

    def _nearest_below(self, version: int) -> Snapshot | None:
        """The newest snapshot in memory at or below ``version``: replaying the few edits
        after it is cheaper than decoding a checkpoint (``_build`` still prefers a newer
        checkpoint when one lies in between)."""
        with self._cache_lock:
            known = [s for v, s in self._history.items() if v <= version]
        current = self._current
        if current is not None and current.version <= version:
            known.append(current)
        return max(known, key=lambda s: s.version, default=None)

    def _remember(self, snapshot: Snapshot) -> None:
        with self._cache_lock:
            self._history[snapshot.version] = snapshot
            self._history.move_to_end(snapshot.version)
            total = sum(_weight(s) for s in self._history.values())
            while len(self._history) > 1 and total > self._history_budget:
                _, dropped = self._history.popitem(last=False)
                total -= _weight(dropped)

    def _publish(self, snapshot: Snapshot) -> None:
        with self._lock:
            # versions only move forward, whatever order concurrent refreshes finish in
            if self._current is None or snapshot.version > self._current.version:
                self._current = snapshot

    def _safe_url(self) -> str:
        return self._engine.url.render_as_string(hide_password=True)


def _pack(document: TaxonomyDocument) -> bytes:
    return gzip.compress(document.model_dump_json().encode("utf-8"), compresslevel=1)


def _unpack(blob: bytes) -> TaxonomyDocument:
    with paused_gc():
        return TaxonomyDocument.model_validate_json(gzip.decompress(blob))
