"""Where the service's crosswalks live: the one place that opens a
:class:`~taxonomy.crosswalk_catalog.CrosswalkCatalog` for the service and the CLI.

``database.url`` set: the crosswalks and the taxonomies they map to live in that database
(one engine, :func:`serve.database.open_engine`), shared by every replica; unset: files in
the data directory (``crosswalks.db``, ``taxonomies/<name>.db``).
"""

from __future__ import annotations

from serve.database import open_engine
from serve.filemodes import private_db_file
from serve.settings import Settings
from taxonomy.crosswalk_catalog import CrosswalkCatalog
from taxonomy.store import TaxonomyStore

#: the longest a crosswalk's or a taxonomy's current version is trusted on the hot path (a
#: request's ``?crosswalk=``) before the database is asked again; never longer than
#: ``server.refresh_interval_s``, the bound within which replicas converge
CROSSWALK_REFRESH_S = 1.0


def crosswalk_refresh_s(settings: Settings) -> float:
    interval = settings.server.refresh_interval_s
    return min(CROSSWALK_REFRESH_S, interval) if interval > 0 else CROSSWALK_REFRESH_S


def open_crosswalk_catalog(settings: Settings, store: TaxonomyStore) -> CrosswalkCatalog:
    """The crosswalks of this installation; ``store``: the tagging taxonomy's (stays the caller's)."""
    return CrosswalkCatalog(
        settings.data_dir, store, database_url=settings.database.url_value, open_engine=open_engine,
        prepare_file=private_db_file, refresh_s=crosswalk_refresh_s(settings),
    )
