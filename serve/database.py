"""Where the service's state lives: one setting, one engine factory for every store.

``database.url`` (``TAGSMITH_DATABASE__URL``, or the conventional ``TAGSMITH_DATABASE_URL``)
unset: each store keeps its SQLite file in the data directory, as before (``taxonomy.db``,
``keys.db``, ``feedback.db``, ``review.db``). Set to a PostgreSQL URL
(``postgresql+psycopg://user:password@host:5432/tagsmith``): every store's tables live in that
one database, shared by every replica. The stores' table names do not collide.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from serve.filemodes import private_file
from taxonomy.schema import make_engine

if TYPE_CHECKING:
    from serve.settings import Settings

StoreName = Literal["taxonomy", "keys", "feedback", "review"]
#: each store's SQLite file in the data directory (the default, embedded layout)
SQLITE_FILES: dict[StoreName, str] = {
    "taxonomy": "taxonomy.db", "keys": "keys.db", "feedback": "feedback.db", "review": "review.db",
}


def store_location(settings: Settings, store: StoreName) -> Path | str:
    """Where ``store`` lives: ``database.url`` when set, else its SQLite file in the data
    directory (a Path); what the stores' constructors and :func:`open_engine` take."""
    if settings.database.url:
        return settings.database.url
    return settings.data_dir / SQLITE_FILES[store]


def store_url(settings: Settings, store: StoreName) -> str:
    """The SQLAlchemy URL of ``store`` (:func:`store_location` as a URL)."""
    location = store_location(settings, store)
    return f"sqlite:///{location}" if isinstance(location, Path) else location


def open_engine(location: Path | str) -> Engine:
    """The one engine factory of the service's stores. ``location``: a SQLite file (a Path;
    created 0600 first, so SQLite, which copies the database's mode to its -wal and -shm
    files, never makes it world-readable under a umask of 022) or any SQLAlchemy URL
    (``sqlite:///…`` gets the same care; ``postgresql+psycopg://…``: a pooled engine that
    checks connections before use). SQLite runs in WAL with synchronous=FULL and a busy
    timeout (:func:`taxonomy.schema.make_engine`)."""
    if isinstance(location, Path):
        location = f"sqlite:///{location}"
    url = make_url(location)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        private_file(path)
    return make_engine(location)


def safe_url(url: str) -> str:
    """``url`` with its password hidden, for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)
