"""The taxonomies and crosswalks of one data directory, side by side.

- the tagging taxonomy: the main :class:`~taxonomy.store.TaxonomyStore` (name ``default``);
- other taxonomies a crosswalk maps to (e.g. Google's): each its own versioned store,
  ``<data_dir>/taxonomies/<name>.db``;
- the crosswalks: one :class:`~taxonomy.crosswalk_store.CrosswalkStore`,
  ``<data_dir>/crosswalks.db``; each version records the versions of both taxonomies it was
  checked against.

With a shared database (``database_url``, the service's ``database.url``) both live in it
instead, so every replica sees the same crosswalks: the crosswalk tables next to the other
stores', and on PostgreSQL each other taxonomy's tables in a schema of its own
(``tax_<name>``: the taxonomy store's table names are fixed), all through one engine; on a
shared SQLite database file the taxonomies are files beside it (``taxonomies/<name>.db``).
A crosswalk imported or edited through one replica is used by the others within
``refresh_s``.

Used by the CLI and the service alike (the one implementation of import, edit, validation,
broken rows and counterparts).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from taxonomy.crosswalk import (
    DEFAULT_TAXONOMY,
    BrokenRow,
    Counterpart,
    Crosswalk,
    CrosswalkDocument,
    CrosswalkReport,
    RowEdit,
    apply_row_edits,
    broken_rows,
    check_name,
    validate_crosswalk,
)
from taxonomy.crosswalk_store import CrosswalkStore, UnknownCrosswalk
from taxonomy.errors import EmptyStore, UnknownVersion
from taxonomy.formats import read_document
from taxonomy.formats.crosswalk import read_crosswalk
from taxonomy.model import TaxonomyDocument
from taxonomy.schema import make_engine, namespaced, schema_exists
from taxonomy.snapshot import Snapshot
from taxonomy.store import TaxonomyStore

DATA = Path(__file__).resolve().parent / "data"
#: packaged (licences in taxonomy/data/NOTICE): Shopify's mapping to Google (MIT) and the
#: Google Product Taxonomy it maps to
PACKAGED_GOOGLE_TAXONOMY = DATA / "google_product_taxonomy_2021-09-21.json.gz"
PACKAGED_GOOGLE_CROSSWALK = DATA / "shopify_2024-04_to_google_2021-09-21.json.gz"


class MissingTaxonomy(LookupError):
    """A crosswalk names a taxonomy that holds no version yet: import it first."""


@dataclass(frozen=True)
class Resolved:
    """A crosswalk with the taxonomy versions it is read against."""

    crosswalk: Crosswalk
    source: Snapshot
    target: Snapshot


class CrosswalkCatalog:
    def __init__(
        self, data_dir: Path, default_store: TaxonomyStore, *, crosswalk_url: str | None = None,
        database_url: str | None = None, open_engine: Callable[[str], Engine] = make_engine,
        prepare_file: Callable[[Path], object] | None = None, refresh_s: float = 1.0,
    ) -> None:
        """``default_store``: the tagging taxonomy's store (stays the caller's to close).
        ``database_url``: the shared database the crosswalks and their taxonomies live in
        (None: files in ``data_dir``; ``crosswalk_url`` names another crosswalk database),
        opened once with ``open_engine`` (the service's :func:`serve.database.open_engine`).
        ``prepare_file``: called with each database file before it is opened (the service
        creates them owner-only: serve/filemodes.py). ``refresh_s``: how long the current
        versions of crosswalks and taxonomies read on the hot path (:meth:`resolve`, a
        request's ``?crosswalk=``) are trusted before the databases are asked again: writes
        through this catalog are seen at once, other processes' within ``refresh_s``
        (measured on 2 loaded cores, check + lookup of one result on the packaged Google crosswalk:
        16 ms a request when every call asks the databases, 0.24 ms with this)."""
        self.refresh_s = refresh_s
        self._heads: dict[str, tuple[int, float]] = {}
        self._refreshed: dict[str, float] = {}
        self.data_dir = Path(data_dir)
        self.default_store = default_store
        self._prepare = prepare_file
        self._shared: Engine | None = None
        if database_url is not None:
            self._shared = open_engine(database_url)
            self.store = CrosswalkStore(self._shared)
        else:
            if crosswalk_url is None:
                crosswalk_url = f"sqlite:///{self._prepared(self.data_dir / 'crosswalks.db')}"
            self.store = CrosswalkStore(crosswalk_url)
        self._stores: dict[str, TaxonomyStore] = {}
        self._lock = threading.Lock()

    def _prepared(self, path: Path) -> Path:
        if self._prepare is not None:
            self._prepare(path)
        return path

    # ---- taxonomies -----------------------------------------------------------------------
    @property
    def _in_postgresql(self) -> bool:
        return self._shared is not None and self._shared.dialect.name == "postgresql"

    def taxonomy_path(self, name: str) -> Path:
        """The SQLite file of taxonomy ``name``: in the data directory, or beside a shared
        SQLite database (unused with PostgreSQL: :meth:`taxonomy_namespace`)."""
        base = self.data_dir
        if self._shared is not None and self._shared.dialect.name == "sqlite" and self._shared.url.database:
            base = Path(self._shared.url.database).expanduser().parent
        return base / "taxonomies" / f"{check_name(name)}.db"

    @staticmethod
    def taxonomy_namespace(name: str) -> str:
        """The PostgreSQL schema of taxonomy ``name`` (at most 63 bytes, PostgreSQL's limit)."""
        check_name(name)
        if len(name) <= 59:
            return f"tax_{name}"
        return f"tax_{name[:40]}_{hashlib.sha256(name.encode()).hexdigest()[:12]}"

    def _taxonomy_exists(self, name: str) -> bool:
        if name == DEFAULT_TAXONOMY or name in self._stores:
            return True
        if self._in_postgresql:
            assert self._shared is not None
            return schema_exists(self._shared, self.taxonomy_namespace(name))
        return self.taxonomy_path(name).exists()

    def taxonomy_store(self, name: str) -> TaxonomyStore:
        """The store of taxonomy ``name`` (opened on first use; created empty if new)."""
        if name == DEFAULT_TAXONOMY:
            return self.default_store
        with self._lock:
            store = self._stores.get(name)
            if store is None:
                if self._in_postgresql:
                    assert self._shared is not None
                    store = TaxonomyStore(namespaced(self._shared, self.taxonomy_namespace(name)))
                else:
                    store = TaxonomyStore(f"sqlite:///{self._prepared(self.taxonomy_path(name))}")
                self._stores[name] = store
            return store

    def taxonomy(self, name: str, version: int | None = None, *, fresh: bool = False) -> Snapshot:
        """A version of taxonomy ``name`` (default: its newest, as of ``refresh_s`` ago unless
        ``fresh``); MissingTaxonomy when it has none."""
        if not self._taxonomy_exists(name):
            raise MissingTaxonomy(f"no taxonomy {name!r}: import it first (tagsmith crosswalk import-taxonomy)")
        store = self.taxonomy_store(name)
        try:
            if version is None:
                now = time.monotonic()
                if fresh or store.version == 0 or now - self._refreshed.get(name, -math.inf) >= self.refresh_s:
                    store.refresh()
                    self._refreshed[name] = now
                return store.current()
            return store.snapshot(version)
        except EmptyStore as exc:
            raise MissingTaxonomy(f"taxonomy {name!r} holds no version yet: import it first") from exc

    def import_taxonomy(
        self, name: str, document: TaxonomyDocument, *, author: str | None = None, message: str | None = None
    ) -> Snapshot:
        """Store ``document`` as the next version of taxonomy ``name`` (not the tagging
        taxonomy: that one is imported with ``tagsmith taxonomy import``)."""
        if name == DEFAULT_TAXONOMY:
            raise ValueError("the tagging taxonomy is imported with `tagsmith taxonomy import`, not here")
        return self.taxonomy_store(name).import_document(document, author=author, message=message)

    # ---- crosswalks -----------------------------------------------------------------------
    def names(self) -> dict[str, int]:
        return self.store.heads()

    def get(self, name: str, version: int | None = None) -> Crosswalk:
        return self.store.get(name, version)

    def _head(self, name: str) -> int:
        """The current version of crosswalk ``name``, asked of the database at most every
        ``refresh_s`` (0: no such crosswalk)."""
        now = time.monotonic()
        known = self._heads.get(name)
        if known is not None and known[0] > 0 and now - known[1] < self.refresh_s:
            return known[0]
        head = self.store.head(name)
        self._heads[name] = (head, now)
        return head

    def resolve(self, name: str, version: int | None = None, *, source_version: int | None = None) -> Resolved:
        """Crosswalk ``name`` (default: its current version, see ``refresh_s``) with the
        source taxonomy at ``source_version`` (default: its newest) and the newest target."""
        if version is None:
            version = self._head(name)
            if version == 0:
                raise UnknownCrosswalk(f"no crosswalk {name!r}")
        crosswalk = self.store.get(name, version)
        doc = crosswalk.document
        return Resolved(
            crosswalk, self.taxonomy(doc.source_taxonomy, source_version), self.taxonomy(doc.target_taxonomy)
        )

    def import_crosswalk(
        self, name: str, document: CrosswalkDocument, *, expected_version: int | None = None,
        author: str | None = None, message: str | None = None,
    ) -> tuple[Crosswalk, CrosswalkReport]:
        """Store ``document`` as the next version of crosswalk ``name``, checked against the
        current versions of both taxonomies (which must exist); rows with problems are kept
        and listed in the report."""
        check_name(name)
        document.check_rows()
        source = self.taxonomy(document.source_taxonomy, fresh=True)
        target = self.taxonomy(document.target_taxonomy, fresh=True)
        report = validate_crosswalk(document.rows, source, target)
        crosswalk = self.store.commit(
            name, document, kind="import", source_version=source.version, target_version=target.version,
            expected_version=expected_version, author=author, message=message,
        )
        self._heads[name] = (crosswalk.version, time.monotonic())
        return crosswalk, report

    def edit(
        self, name: str, edits: Iterable[RowEdit], *, expected_version: int | None,
        author: str | None = None, message: str | None = None,
    ) -> tuple[Crosswalk, CrosswalkReport]:
        """Apply row edits to the version ``expected_version`` names (None: the current one)
        as a new version; StaleVersion when another writer committed since."""
        base = self.store.get(name, expected_version)
        document = apply_row_edits(base.document, edits)
        source = self.taxonomy(document.source_taxonomy, fresh=True)
        target = self.taxonomy(document.target_taxonomy, fresh=True)
        crosswalk = self.store.commit(
            name, document, kind="edit", source_version=source.version, target_version=target.version,
            expected_version=base.version, author=author, message=message,
        )
        self._heads[name] = (crosswalk.version, time.monotonic())
        return crosswalk, validate_crosswalk(document.rows, source, target)

    def report(self, name: str, version: int | None = None) -> CrosswalkReport:
        """Crosswalk ``name`` checked against the current versions of both taxonomies."""
        r = self.resolve(name, version)
        return validate_crosswalk(r.crosswalk.document.rows, r.source, r.target)

    def broken(self, name: str, source_version: int | None = None) -> list[BrokenRow]:
        """The rows of the current crosswalk that version ``source_version`` of the source
        taxonomy (default: its newest) or the newest target taxonomy breaks."""
        r = self.resolve(name, source_version=source_version)
        store = self.taxonomy_store(r.crosswalk.document.source_taxonomy)
        try:
            base: Snapshot | None = store.snapshot(r.crosswalk.info.source_version)
        except UnknownVersion:
            base = None
        return broken_rows(r.crosswalk, base, r.source, r.target)

    def counterpart(self, name: str, node_id: str, *, fallback: bool = True) -> tuple[Resolved, Counterpart]:
        """Where source node ``node_id`` lands in the crosswalk's target taxonomy."""
        r = self.resolve(name)
        return r, r.crosswalk.counterpart(node_id, r.source, r.target, fallback=fallback)

    def install_packaged(self, name: str = "google", *, author: str | None = None) -> tuple[Crosswalk, CrosswalkReport]:
        """Import the packaged Google Product Taxonomy (when taxonomy ``google`` is empty) and
        Shopify's Shopify → Google mapping as crosswalk ``name``."""
        document = read_crosswalk(PACKAGED_GOOGLE_CROSSWALK)
        store = self.taxonomy_store(document.target_taxonomy)
        if store.version == 0:
            if not PACKAGED_GOOGLE_TAXONOMY.exists():
                raise MissingTaxonomy(
                    "the Google Product Taxonomy is not packaged in this installation: import it first "
                    "(tagsmith crosswalk import-taxonomy google google taxonomy-with-ids.en-US.txt)"
                )
            self.import_taxonomy(
                document.target_taxonomy, read_document(PACKAGED_GOOGLE_TAXONOMY),
                author=author, message="packaged Google Product Taxonomy 2021-09-21",
            )
        return self.import_crosswalk(name, document, author=author, message="packaged Shopify → Google mapping")

    def close(self) -> None:
        self.store.close()
        with self._lock:
            stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            store.close()
        if self._shared is not None:
            self._shared.dispose()

    def __enter__(self) -> CrosswalkCatalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Crosswalk]:
        for name in self.names():
            yield self.store.get(name)


__all__ = ["CrosswalkCatalog", "MissingTaxonomy", "Resolved", "UnknownCrosswalk"]
