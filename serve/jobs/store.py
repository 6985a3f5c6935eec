"""Jobs in the database: the job rows, their input items, batch leases and results.

Where: the data directory's ``jobs/jobs.db`` (SQLite), or ``database.url`` (PostgreSQL, or a
shared SQLite file), through the same SQLAlchemy code: with a shared database, every
replica's workers take batches of every job, and a job is created, cancelled, deleted and
read through any replica.

Tables::

    jobs          one row per job: owner, state, counts, idempotency key (UNIQUE(owner, key))
    job_items     the validated input, one row per line (PK (job_id, seq), UNIQUE(job_id, custom_id))
    job_batches   the input cut into batches of ``jobs.batch_size``: done or not, and a lease
    job_results   one row per custom_id (PK (job_id, seq), UNIQUE(job_id, custom_id)): a result
                  can never be written twice

**Exactly once.** A worker *claims* a pending batch whose lease is free or expired (on
PostgreSQL ``SELECT … FOR UPDATE SKIP LOCKED``, so concurrent claimers pass over each other's
rows; on SQLite the claim's transaction holds the write lock), setting a new random lease
token and ``lease_until = now + lease_s``; it extends the lease while it tags
(:meth:`JobStore.extend`), then writes the batch's results, its counts and ``done`` in one
transaction that first checks that the job is still active and the lease token still its
own (:meth:`JobStore.complete`). A worker killed mid-batch writes nothing; its lease expires
and another worker (of any replica) takes the batch. A worker that lost its lease (it stalled
longer than ``lease_s``) finds its token replaced and writes nothing either. Lease times are
the database server's clock (:func:`serve.database.database_time`, seconds since the epoch),
read in the claiming or extending transaction, never a replica's own: a replica whose clock
runs ahead cannot take a batch whose lease still runs, nor one whose clock lags keep a lease
past ``lease_s`` without heartbeats.

**Results in input order.** ``job_results.seq`` is the input line's number. While a job is
active, :meth:`JobStore.read_results` returns the results of the complete prefix of the
input (it stops at the first line without a result), so the lines a client has read never
change and ``offset`` (lines already read) is stable, whichever replica wrote which batch;
once the job is finished (completed, cancelled, failed) nothing more is written and every
result is returned, in input order.

**Uploads** stream into a staging directory of the receiving replica (:class:`StagedJob`,
under ``<data_dir>/jobs``, 0700, files 0600: inputs are the clients' catalogs), then the job
row, its items and batches are inserted in one transaction (the commit point); the staging
directory is removed either way. A crash during an upload leaves a staging directory,
removed at the next start (:meth:`JobStore.remove_orphans`; one still locked by a live upload
or changed in the last :data:`FRESH_S` seconds is not an orphan).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    RowMapping,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from retrieval.durable import complete_lines
from serve.database import database_time, open_engine
from serve.jobs.input import JobItem
from serve.sqlite import utc
from taxonomy.migrations import StoreSchema, ensure_schema

JobState = Literal["queued", "running", "completed", "cancelled", "failed"]
ACTIVE: frozenset[str] = frozenset({"queued", "running"})
INPUT = "input.jsonl"
#: an older tagsmith's results file, per job directory (imported: JobStore.import_files)
RESULTS_FILE = "results.jsonl"
UPLOAD_PREFIX = ".upload_"
DIR_MODE, FILE_MODE = 0o700, 0o600
#: a directory changed this recently is never taken for an orphan (see _remove_unless_locked)
FRESH_S = 10.0
#: rows per INSERT while committing an upload, and per page while streaming results
CHUNK_ROWS = 1000

metadata = MetaData()
jobs_table = Table(
    "jobs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("total", Integer, nullable=False),
    Column("succeeded", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("idempotency_key", String(255)),
    Column("request_sha256", String(64), nullable=False),
    Column("message", Text),
    # put flagged results in the review queue: 1 / 0, NULL = the review.enqueue setting (issue 20)
    Column("review", Integer),
    UniqueConstraint("owner", "idempotency_key", name="uq_jobs_idempotency"),
)
items_table = Table(
    "job_items",
    metadata,
    Column("job_id", String(40), nullable=False),
    Column("seq", Integer, nullable=False),  # the line's number in the input, from 0
    Column("custom_id", String(256), nullable=False),
    Column("item", Text, nullable=False),  # the JobItem as JSON
    PrimaryKeyConstraint("job_id", "seq", name="pk_job_items"),
    UniqueConstraint("job_id", "custom_id", name="uq_job_items_custom_id"),
)
batches_table = Table(
    "job_batches",
    metadata,
    Column("job_id", String(40), nullable=False),
    Column("batch", Integer, nullable=False),
    Column("first_seq", Integer, nullable=False),
    Column("end_seq", Integer, nullable=False),  # exclusive
    Column("done", Integer, nullable=False, default=0),  # 1 once its results are written
    Column("lease_token", String(32)),  # the current claim's (NULL: never claimed or released)
    Column("lease_owner", String(200)),  # which worker holds it (for operators)
    Column("lease_until", Float, nullable=False, default=0.0),  # seconds since the epoch
    Column("claims", Integer, nullable=False, default=0),  # how often it was taken
    PrimaryKeyConstraint("job_id", "batch", name="pk_job_batches"),
)
results_table = Table(
    "job_results",
    metadata,
    Column("job_id", String(40), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("custom_id", String(256), nullable=False),
    Column("ok", Integer, nullable=False),  # 1: tags, 0: an error line
    Column("line", Text, nullable=False),  # the result line as served, without its newline
    PrimaryKeyConstraint("job_id", "seq", name="pk_job_results"),
    UniqueConstraint("job_id", "custom_id", name="uq_job_results_custom_id"),
)

#: the store's schema: its history in taxonomy/migrations/versions/jobs/
SCHEMA = StoreSchema("jobs", metadata)


@dataclass(frozen=True)
class JobRecord:
    id: str
    owner: str
    state: JobState
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    total: int
    succeeded: int
    failed: int
    idempotency_key: str | None
    request_sha256: str
    message: str | None
    review: bool | None = None  # enqueue flagged results for review (None: the setting decides)


@dataclass(frozen=True)
class Lease:
    """A batch claimed by one worker until ``until`` (extended while it tags)."""

    job_id: str
    batch: int
    token: str
    owner: str
    until: float
    items: tuple[tuple[int, str], ...]  # (seq, the item's JSON), in input order
    job_queued: bool = False  # the job was still queued when the batch was claimed

    def parsed(self) -> list[tuple[int, JobItem]]:
        """The batch's items; ValueError for a stored line that no longer parses."""
        return [(seq, JobItem.model_validate_json(raw)) for seq, raw in self.items]


@dataclass(frozen=True)
class ResultRow:
    seq: int
    custom_id: str
    ok: bool
    line: str  # without its newline


class _Refused(Exception):
    """Inside a write transaction: roll it back, the write is not ours to make."""


class JobStore:
    def __init__(self, location: Path | str, staging: Path | None = None, *, batch_size: int = 32) -> None:
        """``location``: the jobs database, a SQLite file (a Path) or a database URL
        (:func:`serve.database.open_engine`); ``staging``: the directory where uploads are
        staged (``<data_dir>/jobs``; None: this store takes no uploads);
        ``batch_size``: products per batch of the jobs committed here."""
        self.staging = staging
        self.batch_size = batch_size
        if staging is not None:
            staging.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            staging.chmod(DIR_MODE)  # also when an older version created it world-readable
        self._engine = open_engine(location)
        ensure_schema(self._engine, SCHEMA)  # created or upgraded (taxonomy/migrations)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A writing transaction; on SQLite with the write lock taken at BEGIN (a deferred
        transaction that has read could not upgrade once another writer committed)."""
        with self._engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
            yield conn

    # ---- creating ----------------------------------------------------------------------
    def stage(self) -> StagedJob:
        """A new staging directory for an upload (see :class:`StagedJob`)."""
        assert self.staging is not None, "this store takes no uploads"
        return StagedJob(self.staging / f"{UPLOAD_PREFIX}{secrets.token_hex(12)}")

    def commit(
        self, staged: StagedJob, owner: str, *, request_sha256: str, idempotency_key: str | None = None,
        review: bool | None = None,
    ) -> tuple[JobRecord, bool]:
        """Publish a sealed upload as a queued job, its row, items and batches in one
        transaction: (the job, True) — or (the job created earlier under the same
        idempotency key, False), whatever its payload: the caller compares
        ``request_sha256``. The staging directory is gone afterwards either way."""
        try:
            if idempotency_key is not None:
                earlier = self.find_idempotent(owner, idempotency_key)
                if earlier is not None:
                    return earlier, False
            job_id = f"job_{secrets.token_hex(12)}"
            try:
                with self._write() as conn:  # the commit point
                    conn.execute(insert(jobs_table).values(
                        id=job_id, owner=owner, state="queued", created_at=datetime.now(UTC),
                        total=staged.total, succeeded=0, failed=0, idempotency_key=idempotency_key,
                        request_sha256=request_sha256, review=None if review is None else int(review),
                    ))
                    self._insert_items(conn, job_id, staged.lines())
            except IntegrityError:
                # a concurrent upload with the same idempotency key won the race
                if idempotency_key is None:
                    raise
                earlier = self.find_idempotent(owner, idempotency_key)
                assert earlier is not None
                return earlier, False
            job = self.get(job_id)
            assert job is not None
            return job, True
        finally:
            staged.discard()

    def _insert_items(
        self, conn: Connection, job_id: str, lines: Iterator[str], done: dict[str, tuple[str, bool]] | None = None,
    ) -> None:
        """The items (JSON lines, in input order) and their batches, CHUNK_ROWS at a time;
        ``done``: results already made (custom_id -> (line, ok); an imported job's)."""
        seq = 0
        rows: list[dict[str, object]] = []
        results: list[dict[str, object]] = []
        done_seqs: set[int] = set()
        for line in lines:
            item = JobItem.model_validate_json(line)
            rows.append({"job_id": job_id, "seq": seq, "custom_id": item.custom_id, "item": line})
            if done and item.custom_id in done:
                result, ok = done[item.custom_id]
                results.append({"job_id": job_id, "seq": seq, "custom_id": item.custom_id, "ok": int(ok), "line": result})
                done_seqs.add(seq)
            seq += 1
            if len(rows) == CHUNK_ROWS:
                conn.execute(insert(items_table), rows)
                rows = []
        if rows:
            conn.execute(insert(items_table), rows)
        for start in range(0, len(results), CHUNK_ROWS):
            conn.execute(insert(results_table), results[start:start + CHUNK_ROWS])
        size = self.batch_size
        batches = [
            {"job_id": job_id, "batch": n, "first_seq": start, "end_seq": min(start + size, seq),
             "done": int(all(s in done_seqs for s in range(start, min(start + size, seq)))),
             "lease_until": 0.0, "claims": 0}
            for n, start in enumerate(range(0, seq, size))
        ]
        for start in range(0, len(batches), CHUNK_ROWS):
            conn.execute(insert(batches_table), batches[start:start + CHUNK_ROWS])

    def find_idempotent(self, owner: str, key: str) -> JobRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(jobs_table).where(
                jobs_table.c.owner == owner, jobs_table.c.idempotency_key == key
            )).mappings().first()
        return None if row is None else _record(row)

    # ---- reading -----------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(jobs_table).where(jobs_table.c.id == job_id)).mappings().first()
        return None if row is None else _record(row)

    def list_jobs(self, owner: str | None, *, offset: int = 0, limit: int = 50) -> tuple[list[JobRecord], int]:
        """Newest first; ``owner=None``: everybody's (admin)."""
        where = [] if owner is None else [jobs_table.c.owner == owner]
        with self._engine.connect() as conn:
            total = int(conn.execute(select(func.count()).select_from(jobs_table).where(*where)).scalar_one())
            rows = conn.execute(
                select(jobs_table).where(*where)
                .order_by(jobs_table.c.created_at.desc(), jobs_table.c.id).offset(offset).limit(limit)
            ).mappings().all()
        return [_record(r) for r in rows], total

    def items(self, job_id: str) -> Iterator[JobItem]:
        """The job's input, in order (CHUNK_ROWS rows per query)."""
        next_seq = 0
        while True:
            with self._engine.connect() as conn:
                rows = conn.execute(
                    select(items_table.c.seq, items_table.c.item)
                    .where(items_table.c.job_id == job_id, items_table.c.seq >= next_seq)
                    .order_by(items_table.c.seq).limit(CHUNK_ROWS)
                ).all()
            for _, raw in rows:
                yield JobItem.model_validate_json(raw)
            if len(rows) < CHUNK_ROWS:
                return
            next_seq = rows[-1][0] + 1

    def read_results(self, job_id: str, *, offset: int = 0) -> Iterator[bytes]:
        """The result lines in input order, from the ``offset``-th: while the job is active,
        those of the input's complete prefix only (see the module's docstring)."""
        record = self.get(job_id)
        if record is None:
            return
        prefix_only = record.state in ACTIVE
        r = results_table
        if prefix_only:
            expected = offset
        else:
            with self._engine.connect() as conn:
                first = conn.execute(
                    select(r.c.seq).where(r.c.job_id == job_id).order_by(r.c.seq).offset(offset).limit(1)
                ).scalar_one_or_none()
            if first is None:
                return
            expected = first
        while True:
            with self._engine.connect() as conn:
                rows = conn.execute(
                    select(r.c.seq, r.c.line).where(r.c.job_id == job_id, r.c.seq >= expected)
                    .order_by(r.c.seq).limit(CHUNK_ROWS)
                ).all()
            for seq, line in rows:
                if prefix_only and seq != expected:
                    return  # a line not written yet: the prefix ends here
                yield line.encode("utf-8") + b"\n"
                expected = seq + 1
            if len(rows) < CHUNK_ROWS:
                return

    def results(self, job_id: str) -> list[ResultRow]:
        """Every result row of a job, in input order (tests, tools; the API streams)."""
        r = results_table
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(r.c.seq, r.c.custom_id, r.c.ok, r.c.line).where(r.c.job_id == job_id).order_by(r.c.seq)
            ).all()
        return [ResultRow(seq, custom_id, bool(ok), line) for seq, custom_id, ok, line in rows]

    # ---- batches: claim, extend, complete, release ---------------------------------------
    def claim(self, owner: str, lease_s: float, *, now: float | None = None) -> Lease | None:
        """Take the first pending batch (oldest active job first) whose lease is free or
        expired, for ``lease_s`` seconds; None when there is none. Never the same batch to
        two claimers while a lease runs. ``now``: the database's clock unless given (tests)."""
        b, j = batches_table, jobs_table
        with self._write() as conn:
            now = database_time(conn) if now is None else now
            free = or_(b.c.lease_until <= now, b.c.lease_token.is_(None))
            row = conn.execute(
                select(b.c.job_id, b.c.batch, b.c.first_seq, b.c.end_seq, j.c.state)
                .join(j, j.c.id == b.c.job_id)
                .where(j.c.state.in_(ACTIVE), b.c.done == 0, free)
                .order_by(j.c.created_at, b.c.job_id, b.c.batch).limit(1)
                .with_for_update(of=b, skip_locked=True)  # PostgreSQL; SQLite: the write lock
            ).first()
            if row is None:
                return None
            job_id, batch, first, end, state = row
            token, until = secrets.token_hex(16), now + lease_s
            taken = conn.execute(
                update(b).where(b.c.job_id == job_id, b.c.batch == batch, b.c.done == 0, free)
                .values(lease_token=token, lease_owner=owner[:200], lease_until=until, claims=b.c.claims + 1)
            ).rowcount
            if not taken:
                return None
            i, r = items_table, results_table
            items = conn.execute(  # those of its lines without a result (a batch of an imported job may have some)
                select(i.c.seq, i.c.item)
                .outerjoin(r, and_(r.c.job_id == i.c.job_id, r.c.seq == i.c.seq))
                .where(i.c.job_id == job_id, i.c.seq >= first, i.c.seq < end, r.c.seq.is_(None))
                .order_by(i.c.seq)
            ).all()
        return Lease(job_id, batch, token, owner, until, tuple((s, raw) for s, raw in items), state == "queued")

    def extend(self, lease: Lease, lease_s: float, *, now: float | None = None) -> bool:
        """Extend a held lease to ``now + lease_s``; False when it is no longer held (taken
        by another worker after it expired, or the batch is done). ``now``: the database's clock
        unless given (tests)."""
        b = batches_table
        with self._write() as conn:
            now = database_time(conn) if now is None else now
            return bool(conn.execute(
                update(b).where(b.c.job_id == lease.job_id, b.c.batch == lease.batch,
                                b.c.lease_token == lease.token, b.c.done == 0)
                .values(lease_until=now + lease_s)
            ).rowcount)

    def release(self, lease: Lease) -> None:
        """Give a lease back unfinished (a worker stopping): the batch is free at once."""
        b = batches_table
        with self._write() as conn:
            conn.execute(
                update(b).where(b.c.job_id == lease.job_id, b.c.batch == lease.batch, b.c.lease_token == lease.token)
                .values(lease_token=None, lease_until=0.0)
            )

    def complete(self, lease: Lease, results: Sequence[ResultRow]) -> Literal["written", "completed"] | None:
        """Write a batch's results, add them to the job's counts and mark the batch done, in
        one transaction, if the job is still active and the lease still ours; the job is
        completed in the same transaction when it was its last pending batch. ``"written"``,
        ``"completed"``, or None when nothing was written (cancelled, deleted, lease lost)."""
        ok = sum(1 for r in results if r.ok)
        j, b = jobs_table, batches_table
        try:
            with self._write() as conn:
                # the job's row first (every writer of a job locks it first: no deadlock), and
                # it serialises the job's writers, so the last one sees no batch pending
                if not conn.execute(
                    update(j).where(j.c.id == lease.job_id, j.c.state.in_(ACTIVE))
                    .values(succeeded=j.c.succeeded + ok, failed=j.c.failed + len(results) - ok, message=None)
                ).rowcount:
                    raise _Refused
                if not conn.execute(
                    update(b).where(b.c.job_id == lease.job_id, b.c.batch == lease.batch,
                                    b.c.lease_token == lease.token, b.c.done == 0)
                    .values(done=1, lease_token=None, lease_until=0.0)
                ).rowcount:
                    raise _Refused
                if results:
                    conn.execute(insert(results_table), [
                        {"job_id": lease.job_id, "seq": r.seq, "custom_id": r.custom_id, "ok": int(r.ok), "line": r.line}
                        for r in results
                    ])
                pending = conn.execute(
                    select(func.count()).select_from(b).where(b.c.job_id == lease.job_id, b.c.done == 0)
                ).scalar_one()
                if pending:
                    return "written"
                now = datetime.now(UTC)
                conn.execute(update(j).where(j.c.id == lease.job_id).values(
                    state="completed", finished_at=now, started_at=func.coalesce(j.c.started_at, now),
                ))
                return "completed"
        except _Refused:
            return None

    # ---- changing ----------------------------------------------------------------------
    def transition(
        self, job_id: str, state: JobState, *, only_from: frozenset[str], message: str | None = None
    ) -> bool:
        """Move to ``state`` if the job is in one of ``only_from``; True when it moved."""
        values: dict[str, object] = {"state": state, "message": message}
        now = datetime.now(UTC)
        if state == "running":
            values["started_at"] = now
        elif state not in ACTIVE:
            values["finished_at"] = now
        with self._write() as conn:
            moved = conn.execute(
                update(jobs_table)
                .where(jobs_table.c.id == job_id, jobs_table.c.state.in_(only_from))
                .values(**values)
            ).rowcount
        return bool(moved)

    def set_message(self, job_id: str, message: str | None) -> None:
        """Why an active job is waiting (None: it is not)."""
        with self._write() as conn:
            conn.execute(update(jobs_table).where(jobs_table.c.id == job_id, jobs_table.c.state.in_(ACTIVE))
                         .values(message=message))

    def delete(self, job_id: str) -> None:
        """The job's row first (as every writer locks it first), then its items, batches, results."""
        with self._write() as conn:
            conn.execute(delete(jobs_table).where(jobs_table.c.id == job_id))
            for table in (results_table, batches_table, items_table):
                conn.execute(delete(table).where(table.c.job_id == job_id))

    def remove_orphans(self) -> int:
        """Staging directories of uploads that crashed before their commit point, and job
        directories of an older tagsmith's file layout without a row. One still locked
        belongs to an upload in progress and is left alone."""
        if self.staging is None:
            return 0
        candidates = [p for p in self.staging.glob(f"{UPLOAD_PREFIX}*") if p.is_dir()]
        candidates += [p for p in self.staging.glob("job_*") if p.is_dir() and self.get(p.name) is None]
        return sum(_remove_unless_locked(path) for path in candidates)

    def import_files(self) -> int:
        """Move the jobs of an older tagsmith's file layout into the database: each
        ``job_<id>/`` directory (``input.jsonl``, ``results.jsonl``) of the staging directory
        whose row is in this database, or in ``jobs.db`` beside it (the data directory's,
        when ``database.url`` is set), becomes the job's items, batches and results, in one
        transaction; the directory is removed afterwards. The number of jobs imported."""
        if self.staging is None:
            return 0
        local = self.staging / "jobs.db"
        ours = self._engine.url.get_backend_name() == "sqlite" and Path(self._engine.url.database or "") == local
        source = None if ours or not local.exists() else open_engine(local)
        imported = 0
        try:
            for path in sorted(p for p in self.staging.glob("job_*") if p.is_dir() and (p / INPUT).exists()):
                imported += self._import_dir(path, source)
        finally:
            if source is not None:
                source.dispose()
        return imported

    def _import_dir(self, path: Path, source: Engine | None) -> int:
        job_id, j = path.name, jobs_table
        with self._engine.connect() as conn:
            row = conn.execute(select(j).where(j.c.id == job_id)).mappings().first()
            had_items = conn.execute(select(items_table.c.seq).where(items_table.c.job_id == job_id).limit(1)).first()
        if row is None and source is not None:
            with source.connect() as conn:
                row = conn.execute(select(j).where(j.c.id == job_id)).mappings().first()
            if row is not None and self.get(job_id) is None:
                with self._write() as conn:
                    conn.execute(insert(j).values(**dict(row)))
        if row is None:
            return 0  # an orphan (crashed before its row): remove_orphans' business
        if had_items is None:
            done: dict[str, tuple[str, bool]] = {}
            for raw in complete_lines(path / RESULTS_FILE):
                record = json.loads(raw)
                done[str(record["custom_id"])] = (raw.decode("utf-8"), record.get("error") is None)
            ok = sum(1 for _, good in done.values() if good)
            with (path / INPUT).open(encoding="utf-8") as fh, self._write() as conn:
                self._insert_items(conn, job_id, (line.rstrip("\n") for line in fh if line.strip()), done)
                values: dict[str, object] = {"succeeded": ok, "failed": len(done) - ok}
                pending = conn.execute(select(func.count()).select_from(batches_table).where(
                    batches_table.c.job_id == job_id, batches_table.c.done == 0)).scalar_one()
                if not pending and row["state"] in ACTIVE:
                    values |= {"state": "completed", "finished_at": datetime.now(UTC)}
                conn.execute(update(j).where(j.c.id == job_id).values(**values))
        shutil.rmtree(path, ignore_errors=True)
        return 1

    def close(self) -> None:
        self._engine.dispose()


class StagedJob:
    """An upload as it streams in: ``input.jsonl`` in its own directory grows with each
    :meth:`write`; :meth:`seal` makes it complete; :meth:`JobStore.commit` publishes it.

    The directory is ``flock``-ed for as long as this object owns it, so that
    :meth:`JobStore.remove_orphans` (of this process or another) never takes a live
    upload for a crashed one; the kernel drops the lock when the process dies."""

    def __init__(self, path: Path) -> None:
        path.mkdir(mode=DIR_MODE)
        self.path: Path | None = path
        self.total = 0
        self._lock = os.open(path, os.O_RDONLY)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self._input = open(_create_private(path / INPUT), "wb")  # noqa: SIM115 (closed by seal or discard)

    def write(self, items: Sequence[JobItem]) -> None:
        if items:
            self._input.write(b"".join(
                item.model_dump_json(exclude_defaults=True).encode("utf-8") + b"\n" for item in items
            ))
            self.total += len(items)

    def seal(self) -> None:
        """The input is complete: flush and close it (the database commit makes it durable)."""
        self._input.flush()
        self._input.close()

    def lines(self) -> Iterator[str]:
        """The sealed input's lines (items as JSON), in order, read as needed."""
        assert self.path is not None
        with (self.path / INPUT).open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield line.rstrip("\n")

    def discard(self) -> None:
        """Remove the directory and release the lock; idempotent."""
        self._input.close()
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1


def _create_private(path: Path) -> int:
    """A new file only its owner may read (a descriptor open for writing)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)


def _remove_unless_locked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        if time.time() - os.fstat(fd).st_mtime < FRESH_S:
            return False  # maybe an upload between its mkdir and its lock: next start's
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # an upload still writing it
        shutil.rmtree(path, ignore_errors=True)
        return True
    finally:
        os.close(fd)


def result_line(custom_id: str, result: object | None, error: dict[str, str] | None, degraded: bool) -> str:
    """A result line as served (without its newline)."""
    return json.dumps(
        {"custom_id": custom_id, "result": result, "degraded": degraded, "error": error},
        ensure_ascii=False,
    )


def _record(r: RowMapping) -> JobRecord:
    return JobRecord(
        id=r["id"], owner=r["owner"], state=r["state"], created_at=utc(r["created_at"]),
        started_at=utc(r["started_at"]), finished_at=utc(r["finished_at"]), total=r["total"],
        succeeded=r["succeeded"], failed=r["failed"], idempotency_key=r["idempotency_key"],
        request_sha256=r["request_sha256"], message=r["message"],
        review=None if r["review"] is None else bool(r["review"]),
    )
