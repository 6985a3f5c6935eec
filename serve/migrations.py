"""The schemas of every store of a configuration: what ``tagsmith db upgrade`` / ``db current``
act on and what the service checks at start-up (the mechanism: ``taxonomy/migrations``).

``database.url`` unset: each store is its own SQLite file in the data directory (taxonomy.db,
keys.db, feedback.db, review.db, jobs/jobs.db), plus crosswalks.db and one file per named
taxonomy (taxonomies/NAME.db) when they exist. Set: the five stores, the index generations and
the UI sessions share that database (each with its own version table), and so do the
crosswalks and the taxonomies they map to (PostgreSQL: a schema ``tax_<name>`` each, with its
own version table; a shared SQLite file: ``taxonomies/NAME.db`` beside it).

``database.auto_upgrade`` (default true): the service and the CLI upgrade what is behind when
they start, serialised (PostgreSQL advisory lock; SQLite's write lock), so replicas starting
together upgrade once. Off: a pending upgrade refuses the start ("run `tagsmith db upgrade`").
A database newer than this code is refused either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from retrieval import generations_db
from serve import feedback, keys
from serve.database import open_engine, safe_url
from serve.filemodes import private_dir
from serve.jobs import store as jobs_store
from serve.review import store as review_store
from serve.settings import Settings, StoreName
from serve.ui import session_db
from taxonomy import crosswalk_store
from taxonomy import schema as taxonomy_schema
from taxonomy.crosswalk import check_name
from taxonomy.crosswalk_catalog import CrosswalkCatalog
from taxonomy.migrations import (
    SchemaState,
    SchemaTooNew,
    StoreSchema,
    ensure_schema,
    head,
    state,
    upgrade,
    upgrade_sql,
)
from taxonomy.schema import namespaced

#: the stores every configuration has, with their schemas
SERVICE_STORES: dict[StoreName, StoreSchema] = {
    "taxonomy": taxonomy_schema.SCHEMA, "keys": keys.SCHEMA, "feedback": feedback.SCHEMA,
    "review": review_store.SCHEMA, "jobs": jobs_store.SCHEMA,
}
#: stores only a shared database holds (in SQLite mode they are files, not tables)
SHARED_ONLY: tuple[StoreSchema, ...] = (generations_db.SCHEMA, session_db.SCHEMA)
#: every store's schema, by name (the drift check, ``tagsmith db revision``)
ALL_SCHEMAS: dict[str, StoreSchema] = {
    s.name: s for s in (*SERVICE_STORES.values(), *SHARED_ONLY, crosswalk_store.SCHEMA)
}


@dataclass(frozen=True)
class Target:
    """One store of a configuration: ``label`` (``keys``, ``taxonomy:google``…), its schema,
    and where it lives (a SQLite file or a URL)."""

    label: str
    schema: StoreSchema
    location: Path | str
    #: PostgreSQL schema the store's tables live in (a crosswalk's taxonomy, ``tax_<name>``)
    namespace: str | None = None

    @property
    def where(self) -> str:
        return str(self.location) if isinstance(self.location, Path) else safe_url(self.location)


def _taxonomies_dir(settings: Settings) -> Path | None:
    """Where the files of the crosswalks' taxonomies are: ``<data_dir>/taxonomies``, or beside a
    shared SQLite file; None on PostgreSQL (schemas ``tax_<name>``)."""
    url = settings.database.url_value
    if not url:
        return settings.data_dir / "taxonomies"
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return None
    return Path(parsed.database).expanduser().parent / "taxonomies" if parsed.database else settings.data_dir / "taxonomies"


def named_taxonomy(settings: Settings, name: str) -> Target:
    """Where taxonomy ``name`` (one a crosswalk maps to) lives in this configuration, whether or
    not it exists yet: its file, or its PostgreSQL schema (the catalog's naming)."""
    label, folder, url = f"taxonomy:{name}", _taxonomies_dir(settings), settings.database.url_value
    if folder is None:
        assert url is not None
        return Target(label, taxonomy_schema.SCHEMA, url, CrosswalkCatalog.taxonomy_namespace(name))
    return Target(label, taxonomy_schema.SCHEMA, folder / f"{check_name(name)}.db")


def targets(settings: Settings) -> list[Target]:
    """The stores of ``settings``, in the order they are upgraded."""
    found = [Target(name, schema, settings.store_location(name)) for name, schema in SERVICE_STORES.items()]
    url = settings.database.url_value
    named = _taxonomies_dir(settings)
    if url:
        # the crosswalks and the taxonomies they map to live in the shared database too
        # (serve/crosswalks.py): in schemas ``tax_<name>`` on PostgreSQL, in files beside a
        # shared SQLite file
        found += [Target(s.name, s, url) for s in (*SHARED_ONLY, crosswalk_store.SCHEMA)]
        if named is None:
            found += [Target(f"taxonomy:{ns.removeprefix('tax_')}", taxonomy_schema.SCHEMA, url, ns)
                      for ns in _taxonomy_namespaces(url)]
    else:
        crosswalks = settings.data_dir / "crosswalks.db"
        if crosswalks.exists():
            found.append(Target("crosswalks", crosswalk_store.SCHEMA, crosswalks))
    if named is not None and named.is_dir():
        found += [Target(f"taxonomy:{p.stem}", taxonomy_schema.SCHEMA, p) for p in sorted(named.glob("*.db"))]
    return found


def _taxonomy_namespaces(url: str) -> list[str]:
    """The PostgreSQL schemas of the crosswalks' taxonomies (``CrosswalkCatalog.taxonomy_namespace``)."""
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'tax\\_%' ORDER BY 1"
            )).all()
    finally:
        engine.dispose()
    return [str(r[0]) for r in rows]


@contextmanager
def _engine(target: Target) -> Iterator[Engine]:
    if isinstance(target.location, Path):
        private_dir(target.location.parent)  # jobs/: 0700, as the job store makes it
    engine = open_engine(target.location)
    try:
        yield engine if target.namespace is None else engine.execution_options(
            schema_translate_map={None: target.namespace})
    finally:
        engine.dispose()


def current(settings: Settings) -> list[tuple[Target, SchemaState]]:
    """Where each store's schema stands (reads only; creates no table)."""
    out = []
    for target in targets(settings):
        if isinstance(target.location, Path) and not target.location.exists():
            out.append((target, SchemaState(target.schema.name, None, head(target.schema), False, True)))
            continue
        with _engine(target) as engine:
            out.append((target, state(engine, target.schema)))
    return out


def upgrade_one(target: Target) -> tuple[SchemaState, SchemaState]:
    """Bring one store to the head, creating its file or its PostgreSQL schema if missing."""
    with _engine(target) as engine:
        if target.namespace is not None:
            namespaced(engine, target.namespace)
        return upgrade(engine, target.schema)


def upgrade_all(
    settings: Settings, report: Callable[[Target, SchemaState, SchemaState], None] | None = None,
) -> list[tuple[Target, SchemaState, SchemaState]]:
    """Upgrade every store to the head; (target, before, after) each, also given to ``report``
    as each store is done. SchemaTooNew stops at the first store ahead of this code."""
    done = []
    for target in targets(settings):
        before, after = upgrade_one(target)
        done.append((target, before, after))
        if report is not None:
            report(target, before, after)
    return done


def prepare(settings: Settings) -> None:
    """At start-up (``tagsmith serve``, the CLI commands that open stores): every store at the
    head, upgraded now when ``database.auto_upgrade`` allows; SchemaError (UpgradePending,
    SchemaTooNew) with the message to show otherwise."""
    for target in targets(settings):
        with _engine(target) as engine:
            ensure_schema(engine, target.schema, upgrade_allowed=settings.database.auto_upgrade)


def offline_sql(settings: Settings) -> str:
    """The SQL ``db upgrade`` would run on the shared database, for review (reads each store's
    revision; ValueError for a store made before migrations: upgrade that one online)."""
    url = settings.database.url_value
    if not url:
        raise ValueError("--sql needs a shared database (database.url); SQLite files are upgraded in place")
    parts = []
    for target in targets(settings):
        if target.location != url:
            continue
        with _engine(target) as engine:
            now = state(engine, target.schema)
        if not now.known:
            raise SchemaTooNew(target.schema.name, str(now.current), now.head)
        if now.legacy:
            raise ValueError(f"the {target.label} store was made before migrations: run `tagsmith db upgrade` "
                             "(it adopts the tables) instead of --sql")
        if now.current != now.head:
            parts.append(f"-- {target.label}: {now.describe()} -> {now.head}\n"
                         + upgrade_sql(url, target.schema, now.current))
    return "\n".join(parts)
