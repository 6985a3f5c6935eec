"""The review queue's store: doubtful products waiting for a person, and what was decided.

One row per review item (SQLAlchemy Core on ``<data_dir>/review.db``, SQLite as the other
stores; nothing SQLite-only in the SQL, so a PostgreSQL URL would serve too) and one row per
reason it was flagged (``review_reasons``: filters and counts by reason stay SQL); every
claim, release and decision is also written to ``review_events`` (the audit trail: who did
what, when), in the same transaction as the change it records.

**Life of an item**: ``open`` → ``claimed`` (by one reviewer, until a deadline: an abandoned
claim expires and the item is open again, without anyone having to touch it) → ``accepted``,
``corrected`` or ``skipped`` (decided: final). Every transition is one conditional
``UPDATE … WHERE <the state it starts from>``: of two reviewers racing for one item exactly
one changes a row; the other is told who holds it (:class:`Conflict`).

**Enqueuing** the same product again while its item is pending (open or claimed; the same
``id``, or the same text when it has none) updates that item (result, source, reasons)
instead of adding one: the ``pending_key`` column is unique and NULL once decided. A product
whose last decision named the category the tagger now suggests is not enqueued again (the
person already said so); one whose result now disagrees with that decision is.

**Revision**: every item carries a ``revision``, 1 when created and incremented whenever
its content changes (a re-enqueue that replaces the result and reasons, and the decision);
claims and releases leave it alone. A decider passes the revision they saw
(``expected_revision``): when the item has changed since, nothing is decided
(:class:`Conflict` ``changed``, with the item as it is now), so an accept never records a
suggestion the reviewer did not see.

**Order**: pending items in the order of :func:`agent.review_priority.order_for_review` over
all pending items (the shared doubt counts every waiting product), computed when the pending
set changes and kept until then.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    RowMapping,
    String,
    Table,
    Text,
    and_,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from agent.review_priority import ReviewSignal, order_for_review
from serve.database import database_time, open_engine
from serve.sqlite import utc
from taxonomy.migrations import StoreSchema, ensure_schema

__all__ = [
    "DECIDED", "PENDING", "STATUSES", "Claim", "Conflict", "Decision", "EnqueueEntry", "EnqueueReport",
    "NotFound", "ReviewItem", "ReviewStats", "ReviewStore", "Status", "Verdict", "class_support", "dedup_key",
]

Status = Literal["open", "claimed", "accepted", "corrected", "skipped"]
Verdict = Literal["accepted", "corrected", "skipped"]
STATUSES: tuple[Status, ...] = ("open", "claimed", "accepted", "corrected", "skipped")
PENDING: tuple[Status, ...] = ("open", "claimed")
DECIDED: tuple[Verdict, ...] = ("accepted", "corrected", "skipped")

metadata = MetaData()
items_table = Table(
    "review_items",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("dedup_key", String(300), nullable=False, index=True),
    # = dedup_key while the item is pending, NULL once decided: one pending item per product
    Column("pending_key", String(300), unique=True),
    Column("status", String(16), nullable=False, index=True),
    Column("product", Text, nullable=False),  # JSON: the product as sent
    Column("product_id", String(256)),
    Column("result", Text, nullable=False),  # JSON: the tagging contract (TagResult)
    Column("category", String(512)),  # the suggested (top) category, if any
    Column("confidence", Float, nullable=False),
    Column("runner_up", String(512)),
    Column("runner_up_confidence", Float, nullable=False),
    Column("taxonomy_version", Integer, nullable=False),
    Column("index_generation", String(40)),
    Column("source", String(80), nullable=False),
    Column("times_enqueued", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),  # last (re-)enqueue
    Column("claimed_by", String(64)),
    Column("claimed_by_name", String(200)),
    Column("claimed_until", DateTime(timezone=True)),
    Column("decided_by", String(64)),
    Column("decided_by_name", String(200)),
    Column("decided_at", DateTime(timezone=True), index=True),
    Column("final_category", String(512)),
    Column("final_attributes", Text),  # JSON: attribute id -> values, as stored on the example
    Column("note", Text),
    Column("feedback_id", String(40)),
    # incremented when the content changes (re-enqueue, decision); added after the first release
    Column("revision", Integer, nullable=False, server_default="1"),
)
reasons_table = Table(
    "review_reasons",
    metadata,
    Column("item_id", String(40), ForeignKey("review_items.id", ondelete="CASCADE"), primary_key=True),
    Column("reason", String(40), primary_key=True),
    Index("ix_review_reasons_reason", "reason"),
)
events_table = Table(
    "review_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(40), nullable=False, index=True),
    Column("action", String(16), nullable=False),  # claim, release, accepted, corrected, skipped
    Column("actor", String(64), nullable=False),
    Column("actor_name", String(200)),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("detail", Text),  # JSON
)
#: the store's schema: its history in taxonomy/migrations/versions/review/
SCHEMA = StoreSchema("review", metadata)


class NotFound(LookupError):
    """No review item with this id."""


class Conflict(RuntimeError):
    """The item is not in a state that allows this (claimed by someone else, already decided).

    ``code``: ``claimed``, ``already_decided``, ``changed`` (not at the revision the caller
    saw), or ``not_claimed`` for a release;
    ``item``: the item as it is now."""

    def __init__(self, code: str, message: str, item: ReviewItem) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.item = item


@dataclass(frozen=True)
class EnqueueEntry:
    """A flagged result to put in the queue."""

    product: Mapping[str, Any]  # the product as sent (Product, dumped as JSON)
    result: Mapping[str, Any]  # its TagResult, dumped as JSON
    source: str  # api, batch, job:<id>, tag-file
    taxonomy_version: int
    index_generation: str | None


@dataclass(frozen=True)
class EnqueueReport:
    created: int = 0
    updated: int = 0
    skipped: int = 0  # already decided the same way


@dataclass(frozen=True)
class Claim:
    by: str  # the API key id
    by_name: str | None
    until: datetime


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    by: str  # the API key id
    by_name: str | None
    at: datetime
    category: str | None  # the final category (None when skipped)
    attribute_values: dict[str, list[str]]  # attribute id -> values, as stored on the example
    note: str | None
    feedback_id: str | None  # the feedback record the decision made (accepted, corrected)


@dataclass(frozen=True)
class ReviewItem:
    id: str
    status: Status  # as stored; see :meth:`effective_status`
    product: dict[str, Any]
    result: dict[str, Any]
    category: str | None
    confidence: float
    reasons: list[str]
    taxonomy_version: int
    index_generation: str | None
    source: str
    times_enqueued: int
    created_at: datetime
    changed_at: datetime
    claim: Claim | None
    decision: Decision | None
    revision: int = 1  # incremented when the content changes (re-enqueue, decision)

    def effective_status(self, now: datetime | None = None) -> Status:
        """``open`` for a claim that has expired (it is back in the queue)."""
        if self.status == "claimed" and self.claim is not None and self.claim.until <= (now or _now()):
            return "open"
        return self.status

    def claim_held(self, now: datetime | None = None) -> Claim | None:
        """The claim, while it has not expired."""
        return self.claim if self.effective_status(now) == "claimed" else None


@dataclass(frozen=True)
class ReviewStats:
    open: int  # pending and not (validly) claimed
    claimed: int  # claimed, claim not expired
    open_by_reason: dict[str, int]  # pending items (open or claimed) by reason
    decided_today: dict[str, int]  # since 00:00 UTC, by verdict
    decided_total: int
    oldest_pending_at: datetime | None


def _now() -> datetime:
    return datetime.now(UTC)


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def dedup_key(product: Mapping[str, Any]) -> str:
    """Which product an item is about: its id when it has one, else its text."""
    pid = product.get("id")
    if pid:
        return "id:" + str(pid)[:256]
    text = _norm(str(product.get("title", ""))) + "\x1f" + _norm(str(product.get("description", "")))
    return "text:" + hashlib.sha256(text.encode()).hexdigest()


def _signal_columns(result: Mapping[str, Any]) -> dict[str, Any]:
    tags = result.get("tags") or []
    candidates = (result.get("evidence") or {}).get("candidates") or []
    top = tags[0]["id"] if tags else None
    confidence = float(tags[0]["confidence"]) if tags else 0.0
    runner = next((c for c in candidates if c.get("id") != top), None)
    return {
        "category": top, "confidence": confidence,
        "runner_up": runner["id"] if runner else None,
        "runner_up_confidence": float(runner["probability"]) if runner else 0.0,
    }


def _reasons(result: Mapping[str, Any]) -> list[str]:
    reasons = list(dict.fromkeys((result.get("evidence") or {}).get("review_reasons") or []))
    return reasons or ["unspecified"]  # flagged without a stated reason (an older tagger)


class ReviewStore:
    """The review queue. Thread-safe; several processes may share the database."""

    def __init__(self, path: Path | str | None = None, *, url: str | None = None, claim_ttl_s: float = 900.0) -> None:
        """``path``: the SQLite file (``<data_dir>/review.db``) or a URL; or ``url``, any SQLAlchemy
        URL (``database.url``: PostgreSQL). ``claim_ttl_s``: how long a claim lasts by default."""
        if (path is None) == (url is None):
            raise ValueError("give a path or a url")
        self._engine: Engine = open_engine(path if path is not None else str(url))
        ensure_schema(self._engine, SCHEMA)  # created or upgraded (taxonomy/migrations)
        self.claim_ttl_s = claim_ttl_s
        self._order_lock = threading.Lock()
        self._order_key: tuple[Any, ...] | None = None
        self._order: list[str] = []

    def close(self) -> None:
        self._engine.dispose()

    # ---- writing: enqueue --------------------------------------------------------------
    def enqueue_many(self, entries: Sequence[EnqueueEntry], *, now: datetime | None = None) -> EnqueueReport:
        """Put flagged results in the queue, in one transaction: a product already pending
        gets its item updated (result, reasons, source; ``times_enqueued`` counts every entry;
        a claim on it stays); one whose last decision named the category now suggested is skipped.

        Callers on a request path go through :class:`serve.review.ReviewEnqueuer` (bounded,
        in the background), never call this inline."""
        if not entries:
            return EnqueueReport()
        now = now or _now()
        # the last entry of a product wins within one call
        keys = [dedup_key(e.product) for e in entries]
        latest: dict[str, EnqueueEntry] = dict(zip(keys, entries, strict=True))
        times = Counter(keys)
        for attempt in range(3):
            try:
                with self._engine.begin() as conn:
                    return self._enqueue(conn, latest, times, now)
            except IntegrityError:  # another process inserted the same product meanwhile
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _enqueue(
        self, conn: Connection, entries: Mapping[str, EnqueueEntry], times: Mapping[str, int], now: datetime,
    ) -> EnqueueReport:
        t = items_table
        created = updated = skipped = 0
        keys = list(entries)
        pending: dict[str, str] = {}
        last_final: dict[str, str | None] = {}
        for chunk in _chunks(keys, 500):
            for prow in conn.execute(select(t.c.id, t.c.pending_key).where(t.c.pending_key.in_(chunk))):
                pending[prow.pending_key] = prow.id
            decided = conn.execute(
                select(t.c.dedup_key, t.c.final_category, t.c.status, t.c.decided_at)
                .where(t.c.dedup_key.in_(chunk), t.c.status.in_(("accepted", "corrected")))
                .order_by(t.c.decided_at)
            )
            for row in decided:
                last_final[row.dedup_key] = row.final_category  # ordered: the last one stays
        new_rows: list[dict[str, Any]] = []
        reason_rows: list[dict[str, str]] = []
        for key, entry in entries.items():
            signal = _signal_columns(entry.result)
            values = {
                "product": json.dumps(dict(entry.product), ensure_ascii=False),
                "product_id": (str(entry.product.get("id"))[:256] if entry.product.get("id") else None),
                "result": json.dumps(dict(entry.result), ensure_ascii=False),
                **signal,
                "taxonomy_version": entry.taxonomy_version, "index_generation": entry.index_generation,
                "source": entry.source[:80], "changed_at": now,
            }
            reasons = _reasons(entry.result)
            item_id = pending.get(key)
            if item_id is None and key in last_final and last_final[key] == signal["category"]:
                skipped += 1
                continue
            if item_id is None:
                item_id = f"rv_{secrets.token_hex(10)}"
                new_rows.append({
                    "id": item_id, "dedup_key": key, "pending_key": key, "status": "open", "times_enqueued": times[key],
                    "created_at": now, "claimed_by": None, "claimed_by_name": None, "claimed_until": None,
                    "decided_by": None, "decided_by_name": None, "decided_at": None, "final_category": None,
                    "final_attributes": None, "note": None, "feedback_id": None, "revision": 1, **values,
                })
                created += 1
            else:
                conn.execute(update(t).where(t.c.id == item_id).values(
                    times_enqueued=t.c.times_enqueued + times[key], revision=t.c.revision + 1, **values,
                ))
                conn.execute(delete(reasons_table).where(reasons_table.c.item_id == item_id))
                updated += 1
            reason_rows += [{"item_id": item_id, "reason": r} for r in reasons]
        if new_rows:  # one executemany: a batch of new items is one statement, not one each
            conn.execute(insert(t), new_rows)
        if reason_rows:
            conn.execute(insert(reasons_table), reason_rows)
        return EnqueueReport(created, updated, skipped)

    # ---- reading -----------------------------------------------------------------------
    def get(self, item_id: str) -> ReviewItem:
        """The item; :class:`NotFound` when there is none."""
        with self._engine.connect() as conn:
            return self._get(conn, item_id)

    def _get(self, conn: Connection, item_id: str) -> ReviewItem:
        row = conn.execute(select(items_table).where(items_table.c.id == item_id)).mappings().first()
        if row is None:
            raise NotFound(item_id)
        return self._items(conn, [row])[0]

    def _items(self, conn: Connection, rows: Sequence[RowMapping]) -> list[ReviewItem]:
        reasons: dict[str, list[str]] = {}
        for chunk in _chunks([r["id"] for r in rows], 500):
            for rr in conn.execute(
                select(reasons_table).where(reasons_table.c.item_id.in_(chunk)).order_by(reasons_table.c.reason)
            ):
                reasons.setdefault(rr.item_id, []).append(rr.reason)
        out = []
        for r in rows:
            result = json.loads(r["result"])
            # the tagger's own order of reasons (the table sorts them)
            stated = [x for x in (result.get("evidence") or {}).get("review_reasons") or [] if x in reasons.get(r["id"], [])]
            ordered = list(dict.fromkeys([*stated, *reasons.get(r["id"], [])]))
            out.append(_item(r, result, ordered))
        return out

    def ordered_pending(self, class_support: Mapping[str, int] | None = None, *, support_key: object = None) -> list[str]:
        """Ids of all pending items (open or claimed), most valuable review first
        (:func:`agent.review_priority.order_for_review`). ``class_support``: tagged examples
        per category in the current index; ``support_key``: names that mapping (e.g. the
        index generation), so the order is recomputed when it changes."""
        t = items_table
        pending = t.c.status.in_(PENDING)
        with self._engine.connect() as conn:
            count, last = conn.execute(select(func.count(), func.max(t.c.changed_at)).where(pending)).one()
            key = (int(count), str(last), support_key)
            with self._order_lock:
                if key == self._order_key:
                    return self._order
            rows = conn.execute(
                select(t.c.id, t.c.confidence, t.c.category, t.c.runner_up, t.c.runner_up_confidence)
                .where(pending).order_by(t.c.created_at, t.c.id)
            ).all()
        signals = [ReviewSignal(r.confidence, r.category, r.runner_up, r.runner_up_confidence) for r in rows]
        order = [rows[i].id for i in order_for_review(signals, class_support or {})]
        with self._order_lock:
            self._order_key, self._order = key, order
        return order

    def list_items(
        self, *, statuses: Collection[Status] = PENDING, categories: Collection[str] | None = None,
        reason: str | None = None, offset: int = 0, limit: int = 50,
        class_support: Mapping[str, int] | None = None, support_key: object = None,
        now: datetime | None = None,
    ) -> tuple[list[ReviewItem], int]:
        """A page of items and how many match. ``statuses`` are effective ones (an expired
        claim is ``open``); ``categories``: the suggested category (pending items) or the final
        one (decided) is one of these; ``reason``: flagged for it. Pending items come in review
        order, decided ones newest decision first, pending before decided."""
        now = now or self._clock()
        t = items_table
        wanted = set(statuses)
        rows = self._matching(wanted, categories, reason, now)
        pending_ids = {r.id for r in rows if r.status in PENDING}
        decided = sorted((r for r in rows if r.status not in PENDING), key=lambda r: (r.decided_at, r.id), reverse=True)
        ordered: list[str] = []
        if pending_ids:
            ordered = [i for i in self.ordered_pending(class_support, support_key=support_key) if i in pending_ids]
            seen = set(ordered)  # enqueued after the order was read: at the end
            ordered += sorted(pending_ids - seen)
        ids = [*ordered, *(r.id for r in decided)]
        page = ids[offset : offset + limit]
        if not page:
            return [], len(ids)
        with self._engine.connect() as conn:
            found = {r["id"]: r for r in conn.execute(select(t).where(t.c.id.in_(page))).mappings()}
            items = self._items(conn, [found[i] for i in page if i in found])
        return items, len(ids)

    def _matching(
        self, statuses: set[Status], categories: Collection[str] | None, reason: str | None, now: datetime,
    ) -> list[Any]:
        t = items_table
        where = [_status_clause(statuses, now)]
        if reason is not None:
            where.append(t.c.id.in_(select(reasons_table.c.item_id).where(reasons_table.c.reason == reason)))
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(t.c.id, t.c.status, t.c.category, t.c.final_category, t.c.decided_at).where(*where)
            ).all()
        if categories is not None:
            cats = set(categories)
            rows = [r for r in rows if (r.final_category if r.status in DECIDED else r.category) in cats]
        return list(rows)

    def iter_items(
        self, *, statuses: Collection[Status] = STATUSES, since: datetime | None = None, page: int = 200,
    ) -> Iterator[ReviewItem]:
        """Every matching item, oldest first, read ``page`` at a time (for exports);
        ``since``: decided (or, pending, enqueued) at or after this."""
        t = items_table
        where = [_status_clause(set(statuses), self._clock())]
        if since is not None:
            where.append(or_(t.c.decided_at >= since, and_(t.c.decided_at.is_(None), t.c.changed_at >= since)))
        after: tuple[datetime, str] | None = None
        while True:
            cond = list(where)
            if after is not None:
                cond.append(or_(t.c.created_at > after[0], and_(t.c.created_at == after[0], t.c.id > after[1])))
            with self._engine.connect() as conn:
                rows = conn.execute(
                    select(t).where(*cond).order_by(t.c.created_at, t.c.id).limit(page)
                ).mappings().all()
                items = self._items(conn, rows)
            yield from items
            if len(rows) < page:
                return
            after = (rows[-1]["created_at"], rows[-1]["id"])

    def events(self, item_id: str) -> list[dict[str, Any]]:
        """The item's audit trail, oldest first: action, actor, actor_name, at, detail."""
        e = events_table
        with self._engine.connect() as conn:
            rows = conn.execute(select(e).where(e.c.item_id == item_id).order_by(e.c.id)).mappings().all()
        return [
            {"action": r["action"], "actor": r["actor"], "actor_name": r["actor_name"], "at": utc(r["at"]),
             "detail": json.loads(r["detail"]) if r["detail"] else None}
            for r in rows
        ]

    def stats(self, *, now: datetime | None = None) -> ReviewStats:
        """Queue counts: open / claimed now, pending by reason, decided since 00:00 UTC."""
        now = now or self._clock()
        t, rt = items_table, reasons_table
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        with self._engine.connect() as conn:
            held = and_(t.c.status == "claimed", t.c.claimed_until > now)
            pending_n, claimed_n, oldest = conn.execute(select(
                func.count(), func.coalesce(func.sum(_case_count(held)), 0), func.min(t.c.created_at),
            ).where(t.c.status.in_(PENDING))).one()
            by_reason: dict[str, int] = dict(conn.execute(  # type: ignore[arg-type]
                select(rt.c.reason, func.count()).join(t, t.c.id == rt.c.item_id)
                .where(t.c.status.in_(PENDING)).group_by(rt.c.reason)
            ).all())
            today_rows: dict[str, int] = dict(conn.execute(  # type: ignore[arg-type]
                select(t.c.status, func.count()).where(t.c.status.in_(DECIDED), t.c.decided_at >= today)
                .group_by(t.c.status)
            ).all())
            decided_total = int(conn.execute(select(func.count()).where(t.c.status.in_(DECIDED))).scalar_one())
        return ReviewStats(
            open=int(pending_n) - int(claimed_n), claimed=int(claimed_n),
            open_by_reason={str(k): int(v) for k, v in sorted(by_reason.items())},
            decided_today={v: int(today_rows.get(v, 0)) for v in DECIDED},
            decided_total=decided_total, oldest_pending_at=utc(oldest),
        )

    def _clock(self) -> datetime:
        """Now on the database server's clock: claims expire by one clock for every replica,
        whatever their machines' clocks say (as job leases, serve/jobs/store.py)."""
        with self._engine.connect() as conn:
            return datetime.fromtimestamp(database_time(conn), UTC)

    # ---- claims ------------------------------------------------------------------------
    def claim(
        self, item_id: str, by: str, by_name: str | None = None, *, ttl_s: float | None = None,
        now: datetime | None = None,
    ) -> ReviewItem:
        """Claim one item for ``by`` (an API key id) for ``ttl_s`` (default: the store's);
        claiming an item one holds extends the claim. :class:`Conflict` ``claimed`` when
        someone else holds it, ``already_decided`` when it is decided; :class:`NotFound`."""
        now = now or self._clock()
        with self._engine.begin() as conn:
            if self._take(conn, item_id, by, by_name, now, ttl_s):
                return self._get(conn, item_id)
            raise self._conflict(conn, item_id, now)

    def claim_next(
        self, n: int, by: str, by_name: str | None = None, *, ttl_s: float | None = None,
        categories: Collection[str] | None = None, reason: str | None = None,
        class_support: Mapping[str, int] | None = None, support_key: object = None,
        now: datetime | None = None,
    ) -> list[ReviewItem]:
        """Claim up to ``n`` open items (expired claims included), most valuable first,
        optionally only of ``categories`` / flagged for ``reason``. Items taken by a
        concurrent claimer are passed over: never the same item to two reviewers."""
        now = now or self._clock()
        available = {r.id for r in self._matching({"open"}, categories, reason, now)}
        if not available or n <= 0:
            return []
        order = [i for i in self.ordered_pending(class_support, support_key=support_key) if i in available]
        order += sorted(available - set(order))
        taken: list[str] = []
        with self._engine.begin() as conn:  # each take is conditional: a concurrent claimer's items are passed over
            for item_id in order:
                if len(taken) >= n:
                    break
                if self._take(conn, item_id, by, by_name, now, ttl_s, only_open=True):
                    taken.append(item_id)
        with self._engine.connect() as conn:
            rows = {r["id"]: r for r in conn.execute(select(items_table).where(items_table.c.id.in_(taken))).mappings()}
            return self._items(conn, [rows[i] for i in taken])

    def _take(
        self, conn: Connection, item_id: str, by: str, by_name: str | None, now: datetime,
        ttl_s: float | None, *, only_open: bool = False,
    ) -> bool:
        t = items_table
        until = now + timedelta(seconds=self.claim_ttl_s if ttl_s is None else ttl_s)
        free = or_(t.c.status == "open", and_(t.c.status == "claimed", t.c.claimed_until <= now))
        if not only_open:
            free = or_(free, and_(t.c.status == "claimed", t.c.claimed_by == by))
        changed = conn.execute(update(t).where(t.c.id == item_id, free).values(
            status="claimed", claimed_by=by, claimed_by_name=by_name, claimed_until=until,
        )).rowcount
        if changed:
            _event(conn, item_id, "claim", by, by_name, now, {"until": until.isoformat()})
        return bool(changed)

    def release(self, item_id: str, by: str, by_name: str | None = None, *, force: bool = False,
                now: datetime | None = None) -> ReviewItem:
        """Give a claim back (the item is open again). Only its holder may, unless ``force``
        (an admin). :class:`Conflict` ``not_claimed`` when nobody holds it, ``claimed`` when
        someone else does, ``already_decided``."""
        now = now or self._clock()
        t = items_table
        with self._engine.begin() as conn:
            cond = [t.c.id == item_id, t.c.status == "claimed"]
            if not force:
                cond.append(t.c.claimed_by == by)
            holder = conn.execute(select(t.c.claimed_by).where(*cond)).scalar_one_or_none()
            changed = conn.execute(update(t).where(*cond).values(
                status="open", claimed_by=None, claimed_by_name=None, claimed_until=None,
            )).rowcount
            if changed:
                _event(conn, item_id, "release", by, by_name, now, {"holder": holder})
                return self._get(conn, item_id)
            item = self._get(conn, item_id)
            if item.status in DECIDED:
                raise Conflict("already_decided", f"review item {item_id} was already {item.status}", item)
            if item.status == "open" or item.claim_held(now) is None:
                raise Conflict("not_claimed", f"review item {item_id} is not claimed", item)
            raise self._conflict(conn, item_id, now)

    # ---- decisions ---------------------------------------------------------------------
    def decide(
        self, item_id: str, by: str, by_name: str | None, verdict: Verdict, *,
        category: str | None = None, attribute_values: Mapping[str, Sequence[str]] | None = None,
        note: str | None = None, feedback_id: str | None = None, expected_revision: int | None = None,
        now: datetime | None = None,
    ) -> ReviewItem:
        """Record a decision, atomically (the item's row and its audit event in one
        transaction: a crash leaves the item as it was, never half-decided). Allowed when the
        item is open, its claim expired, or ``by`` holds it, and (given ``expected_revision``)
        it is still at that revision. :class:`Conflict` / :class:`NotFound` otherwise."""
        now = now or self._clock()
        t = items_table
        free = or_(
            t.c.status == "open",
            and_(t.c.status == "claimed", or_(t.c.claimed_by == by, t.c.claimed_until <= now)),
        )
        values = {k: list(v) for k, v in (attribute_values or {}).items()}
        where = [t.c.id == item_id, free]
        if expected_revision is not None:
            where.append(t.c.revision == expected_revision)
        with self._engine.begin() as conn:
            changed = conn.execute(update(t).where(*where).values(
                status=verdict, pending_key=None, decided_by=by, decided_by_name=by_name, decided_at=now,
                final_category=category,
                final_attributes=json.dumps(values, ensure_ascii=False) if values else None,
                note=note, feedback_id=feedback_id,
                claimed_by=None, claimed_by_name=None, claimed_until=None, revision=t.c.revision + 1,
            )).rowcount
            if not changed:
                raise self._conflict(conn, item_id, now, by=by, expected_revision=expected_revision)
            _event(conn, item_id, verdict, by, by_name, now, {
                "category": category, "attribute_values": values, "note": note, "feedback_id": feedback_id,
            })
            return self._get(conn, item_id)

    def check_decidable(
        self, item_id: str, by: str, *, expected_revision: int | None = None, now: datetime | None = None,
    ) -> ReviewItem:
        """The item, when ``by`` may decide it now (and it is at ``expected_revision``, when
        given); else :class:`Conflict` / :class:`NotFound` (a check before slow work;
        :meth:`decide` checks again, atomically)."""
        now = now or self._clock()
        item = self.get(item_id)
        status = item.effective_status(now)
        if (status == "open" or (status == "claimed" and item.claim is not None and item.claim.by == by)) and (
            expected_revision is None or item.revision == expected_revision
        ):
            return item
        with self._engine.connect() as conn:
            raise self._conflict(conn, item_id, now, by=by, expected_revision=expected_revision)

    def _conflict(
        self, conn: Connection, item_id: str, now: datetime, *, by: str | None = None,
        expected_revision: int | None = None,
    ) -> Conflict:
        item = self._get(conn, item_id)  # NotFound when it does not exist
        if item.status in DECIDED:
            assert item.decision is not None
            return Conflict(
                "already_decided",
                f"review item {item_id} was already {item.status} by {item.decision.by_name or item.decision.by} "
                f"at {item.decision.at.isoformat()}", item,
            )
        claim = item.claim_held(now)
        if expected_revision is not None and item.revision != expected_revision and (claim is None or claim.by == by):
            return Conflict(
                "changed",
                f"review item {item_id} changed while you looked at it (revision {expected_revision} → "
                f"{item.revision}: the product was flagged again); review its current suggestion", item,
            )
        who = (claim.by_name or claim.by) if claim else "someone"
        until = f" until {claim.until.isoformat()}" if claim else ""
        return Conflict("claimed", f"review item {item_id} is claimed by {who}{until}", item)


def _chunks(seq: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def _case_count(cond: Any) -> Any:
    return case((cond, 1), else_=0)


def _status_clause(statuses: set[Status], now: datetime) -> Any:
    t = items_table
    parts: list[Any] = [t.c.status.in_([s for s in statuses if s in DECIDED])] if statuses & set(DECIDED) else []
    if "open" in statuses:
        parts.append(or_(t.c.status == "open", and_(t.c.status == "claimed", t.c.claimed_until <= now)))
    if "claimed" in statuses:
        parts.append(and_(t.c.status == "claimed", t.c.claimed_until > now))
    return or_(*parts) if parts else t.c.id.is_(None)


def _event(conn: Connection, item_id: str, action: str, actor: str, actor_name: str | None,
           at: datetime, detail: Mapping[str, Any] | None = None) -> None:
    conn.execute(insert(events_table).values(
        item_id=item_id, action=action, actor=actor, actor_name=actor_name, at=at,
        detail=json.dumps(dict(detail), ensure_ascii=False, default=str) if detail else None,
    ))


def _item(r: RowMapping, result: dict[str, Any], reasons: list[str]) -> ReviewItem:
    claim = None
    if r["status"] == "claimed" and r["claimed_by"] is not None and r["claimed_until"] is not None:
        claim = Claim(r["claimed_by"], r["claimed_by_name"], utc(r["claimed_until"]))
    decision = None
    if r["status"] in DECIDED and r["decided_at"] is not None:
        decision = Decision(
            verdict=r["status"], by=r["decided_by"] or "", by_name=r["decided_by_name"], at=utc(r["decided_at"]),
            category=r["final_category"],
            attribute_values=json.loads(r["final_attributes"]) if r["final_attributes"] else {},
            note=r["note"], feedback_id=r["feedback_id"],
        )
    return ReviewItem(
        id=r["id"], status=r["status"], product=json.loads(r["product"]), result=result,
        category=r["category"], confidence=float(r["confidence"]), reasons=reasons,
        taxonomy_version=int(r["taxonomy_version"]), index_generation=r["index_generation"],
        source=r["source"], times_enqueued=int(r["times_enqueued"]), created_at=utc(r["created_at"]),
        changed_at=utc(r["changed_at"]), claim=claim, decision=decision, revision=int(r["revision"] or 1),
    )


def class_support(categories: Iterable[Iterable[str]]) -> dict[str, int]:
    """Tagged examples per category, from each example's tags."""
    counts: Counter[str] = Counter()
    for tags in categories:
        counts.update(set(tags))
    return dict(counts)

