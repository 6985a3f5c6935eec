"""Batch jobs: create (streamed, validated line by line, idempotent), inspect, stream results,
cancel, delete."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager

from starlette.concurrency import run_in_threadpool

from agent.contract import AttributeSelection
from serve.api.auth import Principal
from serve.api.errors import ApiError, ErrorDetail, retry_after
from serve.api.jobs.protocol import TERMINAL, Job, JobCounts, JobList
from serve.api.tags.service import attribute_selection, crosswalk_problem
from serve.attribute_selection import selection_problem
from serve.jobs import JobInputError, JobRecord, JobStore, JobUpload, JobWorker
from serve.jobs.ingest import fingerprint
from serve.settings import Settings
from taxonomy import Snapshot
from taxonomy.crosswalk_catalog import CrosswalkCatalog

#: what a refused upload is told to wait: uploads take seconds
UPLOAD_RETRY_S = 5


def to_job(record: JobRecord) -> Job:
    done = record.succeeded + record.failed
    return Job(
        id=record.id, state=record.state, created_at=record.created_at,
        started_at=record.started_at, finished_at=record.finished_at,
        counts=JobCounts(total=record.total, succeeded=record.succeeded, failed=record.failed),
        progress=round(done / record.total, 6) if record.total else 1.0,
        message=record.message, results_url=f"/v1/jobs/{record.id}/results", review=record.review,
    )


class JobService:
    def __init__(
        self, store: JobStore, worker: JobWorker, settings: Settings, snapshot: Callable[[], Snapshot],
        *, crosswalks: CrosswalkCatalog | None = None,
    ) -> None:
        """``snapshot``: the taxonomy version in use now (attribute names are checked against it);
        ``crosswalks``: where crosswalk names are looked up."""
        self.crosswalks = crosswalks
        self.store = store
        self.worker = worker
        self.settings = settings
        self.snapshot = snapshot
        self._uploads = threading.BoundedSemaphore(settings.limits.max_concurrent_uploads)

    @contextmanager
    def upload_slot(self) -> Iterator[None]:
        """One of the ``limits.max_concurrent_uploads`` uploads received at once; beyond, 503
        before the body is read: the bound is the server's, shared by every key (not one
        key's rate, which is 429's), and the client may retry in a few seconds."""
        if not self._uploads.acquire(blocking=False):
            raise ApiError(
                503, "uploads_busy",
                f"the server is receiving {self.settings.limits.max_concurrent_uploads} job uploads "
                "(limits.max_concurrent_uploads); retry shortly",
                headers=retry_after(UPLOAD_RETRY_S),
            )
        try:
            yield
        finally:
            self._uploads.release()

    async def create(
        self, principal: Principal, body: AsyncIterator[bytes], idempotency_key: str | None,
        attributes: Sequence[str] | None = None, review: bool | None = None, *, crosswalk: str | None = None,
    ) -> tuple[Job, bool]:
        """(the job, True when created now; False: a retry of an earlier creation). The body
        is checked and staged as it streams; a problem stops reading it (422).
        ``attributes``: the job's ``?attributes=`` (lines may give their own); ``review``:
        its ``?review=`` (flagged results into the review queue; None: the setting)."""
        owner = principal.key_id
        selection = attribute_selection(attributes, self.snapshot())  # 422 before the body is read
        if crosswalk is not None:
            await run_in_threadpool(crosswalk_problem, self.crosswalks, crosswalk, ["query", "crosswalk"])
        if idempotency_key is not None:
            earlier = await run_in_threadpool(self.store.find_idempotent, owner, idempotency_key)
            if earlier is not None:  # a retry: only its fingerprint matters, not its lines
                return self._replay(earlier, fingerprint(await _sha256(body), selection, review, crosswalk)), False
        limits = self.settings.limits

        def check(line_selection: AttributeSelection) -> str | None:
            return selection_problem(self.snapshot(), line_selection)

        def check_crosswalk(name: str) -> str | None:
            try:
                crosswalk_problem(self.crosswalks, name, ["crosswalk"])
            except ApiError as exc:
                return exc.message
            return None

        upload = await run_in_threadpool(
            JobUpload, self.store, max_items=limits.max_job_items,
            max_line_bytes=limits.max_body_bytes, max_depth=limits.max_json_depth,
            attributes=selection, check_attributes=check, review=review, crosswalk=crosswalk,
            check_crosswalk=check_crosswalk,
        )
        try:
            async for chunk in body:  # each chunk as it arrives (up to 64 KiB from the server)
                # parsing and writing are CPU and blocking I/O: off the event loop
                await run_in_threadpool(upload.feed, chunk)
            digest = await run_in_threadpool(upload.finish)
        except JobInputError as exc:
            upload.discard()
            details = [
                ErrorDetail(loc=["line", p.line, *p.loc], message=p.message) for p in exc.problems
            ]
            raise ApiError(422, exc.code, exc.message, details=details) from exc
        except BaseException:  # a too-large or abandoned upload, a full disk, a cancellation
            upload.discard()
            raise
        record, created = await run_in_threadpool(
            self.store.commit, upload.staged, owner, request_sha256=digest, idempotency_key=idempotency_key,
            review=review,
        )
        if not created:
            return self._replay(record, digest), False
        self.worker.wake()
        return to_job(record), True

    def _replay(self, record: JobRecord, digest: str) -> Job:
        if record.request_sha256 != digest:
            raise ApiError(
                422, "idempotency_key_reused",
                f"Idempotency-Key already used for job {record.id} with a different body; "
                "use a new key for a new job",
            )
        return to_job(record)

    def _owned(self, principal: Principal, job_id: str) -> JobRecord:
        record = self.store.get(job_id)
        # another key's job is reported as missing: its existence is not ours to reveal
        if record is None or (record.owner != principal.key_id and not principal.is_admin):
            raise ApiError(404, "not_found", f"no job {job_id!r}")
        return record

    def get(self, principal: Principal, job_id: str) -> Job:
        return to_job(self._owned(principal, job_id))

    def list(self, principal: Principal, offset: int, limit: int) -> JobList:
        owner = None if principal.is_admin else principal.key_id
        records, total = self.store.list_jobs(owner, offset=offset, limit=limit)
        return JobList(items=[to_job(r) for r in records], total=total, offset=offset, limit=limit)

    def results(self, principal: Principal, job_id: str, offset: int) -> Iterator[bytes]:
        record = self._owned(principal, job_id)
        return self.store.read_results(record.id, offset=offset)

    def cancel(self, principal: Principal, job_id: str) -> Job:
        record = self._owned(principal, job_id)
        if not self.store.transition(record.id, "cancelled", only_from=frozenset({"queued", "running"})):
            current = self.store.get(record.id)
            state = current.state if current is not None else "deleted"
            raise ApiError(409, "conflict", f"job {job_id} is {state}: only queued or running jobs can be cancelled")
        return self.get(principal, job_id)

    def delete(self, principal: Principal, job_id: str) -> None:
        record = self._owned(principal, job_id)
        if record.state not in TERMINAL:
            raise ApiError(409, "conflict", f"job {job_id} is {record.state}: cancel it before deleting it")
        self.store.delete(record.id)


async def _sha256(chunks: AsyncIterator[bytes]) -> str:
    digest = hashlib.sha256()
    async for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()
