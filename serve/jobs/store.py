"""Jobs on disk: a SQLite table of jobs, and per job a directory with its input and results.

Layout under ``root`` (``<data_dir>/jobs``, 0700; every file in it 0600: job inputs are
the clients' catalogs)::

    jobs.db                 one row per job: owner, state, counts, idempotency key
    .upload_<token>/        an upload being received (:class:`StagedJob`), locked by its writer
    job_<id>/input.jsonl    the validated input, written (fsynced) before the row exists
    job_<id>/results.jsonl  one line per custom_id, appended in fsynced batches

An upload streams into its own staging directory, which is renamed to ``job_<id>`` once
the whole input is valid and fsynced; the row is the commit point of a creation. A crash
before it leaves an orphan directory, removed at the next start (:meth:`JobStore.remove_orphans`;
a directory still locked by a live upload, or changed in the last :data:`FRESH_S`
seconds, is not an orphan). ``results.jsonl`` is the truth
about progress (the counts in the row follow it); see :mod:`serve.jobs.worker` for exactly-once.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    RowMapping,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from retrieval.durable import fsync_dir
from serve.jobs.input import JobItem
from serve.sqlite import sqlite_engine, utc

JobState = Literal["queued", "running", "completed", "cancelled", "failed"]
ACTIVE: frozenset[str] = frozenset({"queued", "running"})
INPUT, RESULTS = "input.jsonl", "results.jsonl"
UPLOAD_PREFIX = ".upload_"
DIR_MODE, FILE_MODE = 0o700, 0o600
#: a directory changed this recently is never taken for an orphan (see _remove_unless_locked)
FRESH_S = 10.0

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


class JobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        root.chmod(DIR_MODE)  # also when an older version created it world-readable
        self._engine = sqlite_engine(root / "jobs.db")
        metadata.create_all(self._engine)
        self._migrate()

    def _migrate(self) -> None:
        """Add the columns a database made by an older tagsmith lacks."""
        with self._engine.begin() as conn:
            have = {c["name"] for c in inspect(conn).get_columns("jobs")}
            if "review" not in have:
                conn.execute(text("ALTER TABLE jobs ADD COLUMN review INTEGER"))

    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def results_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / RESULTS

    # ---- creating ----------------------------------------------------------------------
    def stage(self) -> StagedJob:
        """A new staging directory for an upload (see :class:`StagedJob`)."""
        return StagedJob(self.root / f"{UPLOAD_PREFIX}{secrets.token_hex(12)}")

    def commit(
        self, staged: StagedJob, owner: str, *, request_sha256: str, idempotency_key: str | None = None,
        review: bool | None = None,
    ) -> tuple[JobRecord, bool]:
        """Publish a sealed upload as a queued job: (the job, True) — or (the job created
        earlier under the same idempotency key, False), whatever its payload: the caller
        compares ``request_sha256``. The staging directory is gone afterwards either way."""
        try:
            if idempotency_key is not None:
                earlier = self.find_idempotent(owner, idempotency_key)
                if earlier is not None:
                    return earlier, False
            job_id = f"job_{secrets.token_hex(12)}"
            directory = self.job_dir(job_id)
            assert staged.path is not None, "commit() takes a staged job once"
            staged.path = staged.path.rename(directory)  # still locked: not an orphan yet
            fsync_dir(self.root)
            try:
                with self._engine.begin() as conn:  # the commit point
                    conn.execute(insert(jobs_table).values(
                        id=job_id, owner=owner, state="queued", created_at=datetime.now(UTC),
                        total=staged.total, succeeded=0, failed=0, idempotency_key=idempotency_key,
                        request_sha256=request_sha256, review=None if review is None else int(review),
                    ))
            except IntegrityError:
                # a concurrent upload with the same idempotency key won the race
                assert idempotency_key is not None
                earlier = self.find_idempotent(owner, idempotency_key)
                assert earlier is not None
                return earlier, False
            staged.path = None  # committed: the directory belongs to the job now
            job = self.get(job_id)
            assert job is not None
            return job, True
        finally:
            staged.discard()

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

    def runnable(self) -> list[JobRecord]:
        """Queued and running jobs, oldest first (running ones were interrupted: resume)."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(jobs_table).where(jobs_table.c.state.in_(ACTIVE)).order_by(jobs_table.c.created_at)
            ).mappings().all()
        return [_record(r) for r in rows]

    def items(self, job_id: str) -> Iterator[JobItem]:
        with (self.job_dir(job_id) / INPUT).open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield JobItem.model_validate_json(line)

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
        with self._engine.begin() as conn:
            moved = conn.execute(
                update(jobs_table)
                .where(jobs_table.c.id == job_id, jobs_table.c.state.in_(only_from))
                .values(**values)
            ).rowcount
        return bool(moved)

    def set_progress(self, job_id: str, succeeded: int, failed: int, message: str | None = None) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(
                succeeded=succeeded, failed=failed, message=message
            ))

    def delete(self, job_id: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(jobs_table).where(jobs_table.c.id == job_id))
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def remove_orphans(self) -> int:
        """Directories without a row: uploads and creations that crashed before their commit
        point. One still locked belongs to an upload in progress (here or in another
        process) and is left alone."""
        with self._engine.connect() as conn:
            known = set(conn.execute(select(jobs_table.c.id)).scalars())
        candidates = [p for p in self.root.glob("job_*") if p.is_dir() and p.name not in known]
        candidates += [p for p in self.root.glob(f"{UPLOAD_PREFIX}*") if p.is_dir()]
        return sum(_remove_unless_locked(path) for path in candidates)

    def close(self) -> None:
        self._engine.dispose()


class StagedJob:
    """A job's directory while its upload streams in: ``input.jsonl`` grows with each
    :meth:`write`; :meth:`seal` makes it durable; :meth:`JobStore.commit` publishes it.

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
        """Flush and fsync the input, create the empty results file, fsync the directory."""
        assert self.path is not None
        self._input.flush()
        os.fsync(self._input.fileno())
        self._input.close()
        os.close(_create_private(self.path / RESULTS))
        fsync_dir(self.path)

    def discard(self) -> None:
        """Remove the directory unless committed, and release the lock; idempotent."""
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


def read_results(path: Path, *, offset: int = 0) -> Iterator[bytes]:
    """The complete result lines (a line being written is not complete yet), from ``offset``."""
    with path.open("rb") as fh:
        for number, line in enumerate(fh):
            if not line.endswith(b"\n"):
                return
            if number >= offset:
                yield line


def result_line(custom_id: str, result: object | None, error: dict[str, str] | None, degraded: bool) -> str:
    return json.dumps(
        {"custom_id": custom_id, "result": result, "degraded": degraded, "error": error},
        ensure_ascii=False,
    ) + "\n"


def _record(r: RowMapping) -> JobRecord:
    return JobRecord(
        id=r["id"], owner=r["owner"], state=r["state"], created_at=utc(r["created_at"]),
        started_at=utc(r["started_at"]), finished_at=utc(r["finished_at"]), total=r["total"],
        succeeded=r["succeeded"], failed=r["failed"], idempotency_key=r["idempotency_key"],
        request_sha256=r["request_sha256"], message=r["message"],
        review=None if r["review"] is None else bool(r["review"]),
    )
