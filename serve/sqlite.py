"""The service's SQLite stores (keys, jobs, feedback): engine and datetime helpers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import overload

from sqlalchemy import Engine

from serve.filemodes import private_file
from taxonomy.schema import make_engine


def sqlite_engine(path: Path) -> Engine:
    """WAL, synchronous=FULL, a busy timeout (the taxonomy store's settings); the file is
    created 0600 first, so SQLite (which copies the database's mode to its -wal and -shm
    files) never makes it world-readable under a umask of 022."""
    private_file(path)
    return make_engine(f"sqlite:///{path}")


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything we store is UTC: say so (RFC 3339 needs it)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
