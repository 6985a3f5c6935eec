"""Reviewer feedback records (SQLite, or ``database.url``): who accepted or corrected which product's tags, when.

The corrected product itself becomes an example of the index (see the feedback service);
this log keeps the decision trail, so corrections can be audited and replayed.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    RowMapping,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
)

from serve.database import open_engine
from serve.sqlite import utc
from taxonomy.migrations import StoreSchema, ensure_schema

metadata = MetaData()
feedback_table = Table(
    "feedback",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("example_id", String(256), nullable=False, index=True),
    Column("verdict", String(16), nullable=False),
    Column("tags", Text, nullable=False),  # JSON list
    Column("product", Text, nullable=False),  # JSON object
    Column("note", Text),
    Column("attribute_values", Text),  # JSON object: attribute id -> [values]; added for issue 19
    Column("reviewer", String(64), nullable=False),
    Column("taxonomy_version", Integer, nullable=False),
    Column("index_generation", String(40)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

#: the store's schema: its history in taxonomy/migrations/versions/feedback/
SCHEMA = StoreSchema("feedback", metadata)


@dataclass(frozen=True)
class FeedbackRecord:
    id: str
    example_id: str
    verdict: str
    tags: list[str]
    product: dict[str, Any]
    note: str | None
    reviewer: str
    taxonomy_version: int
    index_generation: str | None
    created_at: datetime
    attribute_values: dict[str, list[str]] = field(default_factory=dict)


class FeedbackStore:
    def __init__(self, location: Path | str) -> None:
        """``location``: the SQLite file (a Path) or a database URL (:func:`serve.database.open_engine`)."""
        self._engine = open_engine(location)
        ensure_schema(self._engine, SCHEMA)  # created or upgraded (taxonomy/migrations)

    def add(
        self, *, example_id: str, verdict: str, tags: list[str], product: dict[str, Any],
        note: str | None, reviewer: str, taxonomy_version: int, index_generation: str | None,
        attribute_values: dict[str, list[str]] | None = None, record_id: str | None = None,
    ) -> FeedbackRecord:
        """Append a record. ``record_id``: a caller's deterministic id (e.g. the review queue's,
        derived from the item and its revision): writing it again replaces that record, in one
        transaction, so a retried decision leaves one record, never two."""
        record = FeedbackRecord(
            record_id or f"fb_{secrets.token_hex(10)}", example_id, verdict, tags, product, note, reviewer,
            taxonomy_version, index_generation, datetime.now(UTC), dict(attribute_values or {}),
        )
        with self._engine.begin() as conn:
            if record_id is not None:
                conn.execute(delete(feedback_table).where(feedback_table.c.id == record_id))
            conn.execute(insert(feedback_table).values(
                id=record.id, example_id=example_id, verdict=verdict, tags=json.dumps(tags),
                product=json.dumps(product, ensure_ascii=False), note=note, reviewer=reviewer,
                taxonomy_version=taxonomy_version, index_generation=index_generation,
                created_at=record.created_at,
                attribute_values=json.dumps(record.attribute_values, ensure_ascii=False)
                if record.attribute_values else None,
            ))
        return record

    def list_records(self, *, offset: int = 0, limit: int = 50) -> tuple[list[FeedbackRecord], int]:
        """Newest first."""
        with self._engine.connect() as conn:
            total = int(conn.execute(select(func.count()).select_from(feedback_table)).scalar_one())
            rows = conn.execute(
                select(feedback_table).order_by(feedback_table.c.created_at.desc(), feedback_table.c.id)
                .offset(offset).limit(limit)
            ).mappings().all()
        return [_record(r) for r in rows], total

    def close(self) -> None:
        self._engine.dispose()


def _record(r: RowMapping) -> FeedbackRecord:
    return FeedbackRecord(
        id=r["id"], example_id=r["example_id"], verdict=r["verdict"], tags=json.loads(r["tags"]),
        product=json.loads(r["product"]), note=r["note"], reviewer=r["reviewer"],
        taxonomy_version=r["taxonomy_version"], index_generation=r["index_generation"],
        created_at=utc(r["created_at"]),
        attribute_values=json.loads(r["attribute_values"]) if r["attribute_values"] else {},
    )
