"""The service's SQLite stores (keys, jobs, feedback): engine and datetime helpers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import overload

from sqlalchemy import Engine

from taxonomy.schema import make_engine


def sqlite_engine(path: Path) -> Engine:
    """WAL, synchronous=FULL, a busy timeout (the taxonomy store's settings)."""
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
