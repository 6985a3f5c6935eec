"""The one engine factory of the service's stores (where each lives: ``Settings.store_location``).

``database.url`` (``TAGSMITH_DATABASE__URL``, or the conventional ``TAGSMITH_DATABASE_URL``)
unset: each store keeps its SQLite file in the data directory, as before (``taxonomy.db``,
``keys.db``, ``feedback.db``, ``review.db``). Set to a PostgreSQL URL
(``postgresql+psycopg://user:password@host:5432/tagsmith``): every store's tables live in that
one database, shared by every replica. The stores' table names do not collide.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from serve.filemodes import private_file
from taxonomy.schema import make_engine


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


def database_time(conn: Connection) -> float:
    """The database server's clock now, in seconds since the epoch: one clock for every
    replica, whatever their machines' clocks say (leases, claims). PostgreSQL's
    ``clock_timestamp()`` (the time of the call, not of the transaction's start); SQLite's
    ``julianday('now')``, the clock of the one machine its file is on."""
    if conn.dialect.name == "postgresql":
        value = conn.execute(text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar_one()
    else:
        value = conn.execute(text("SELECT (julianday('now') - 2440587.5) * 86400.0")).scalar_one()
    return float(value)


def safe_url(url: str) -> str:
    """``url`` with its password hidden, for logs and messages."""
    return make_url(url).render_as_string(hide_password=True)


def is_unavailable(exc: BaseException) -> bool:
    """Whether a database error means "not reachable now, retry later" (PostgreSQL down,
    restarting or cutting connections; SQLite locked beyond its busy timeout) rather than a
    fault of ours (a missing table, a bad statement): the former is a 503, the latter a 500."""
    if not isinstance(exc, OperationalError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    if type(orig).__module__.startswith("psycopg"):
        return True  # psycopg's OperationalError: connection failures, shutdowns, timeouts
    return "database is locked" in str(orig) or "unable to open database file" in str(orig)


def ping(engine: Engine) -> str | None:
    """None when ``engine``'s database answers ``SELECT 1`` (a connection from the pool, checked
    first), else a short reason without secrets: the readiness check of ``/readyz``."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        return f"unavailable ({type(exc.orig).__name__ if exc.orig is not None else 'OperationalError'})"
    return None
