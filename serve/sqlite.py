"""SQLite specifics of the service's stores: the engine of a SQLite file, naive datetimes.

The engine factory for every backend is :func:`serve.database.open_engine`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import overload

from sqlalchemy import Engine

from serve.database import open_engine


def sqlite_engine(path: Path) -> Engine:
    """The engine of the SQLite file ``path`` (:func:`serve.database.open_engine`)."""
    return open_engine(path)


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything we store is UTC: say so (RFC 3339 needs it)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
