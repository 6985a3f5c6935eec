"""Batch jobs: create (validated whole, idempotent), inspect, stream results, cancel, delete."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from serve.api.auth import Principal
from serve.api.errors import ApiError, ErrorDetail
from serve.api.jobs.protocol import Job, JobCounts, JobList
from serve.jobs import JobInputError, JobRecord, JobStore, JobWorker, parse_job_input, read_results
from serve.settings import Settings

TERMINAL = frozenset({"completed", "cancelled", "failed"})


def to_job(record: JobRecord) -> Job:
    done = record.succeeded + record.failed
    return Job(
        id=record.id, state=record.state, created_at=record.created_at,
        started_at=record.started_at, finished_at=record.finished_at,
        counts=JobCounts(total=record.total, succeeded=record.succeeded, failed=record.failed),
        progress=round(done / record.total, 6) if record.total else 1.0,
        message=record.message, results_url=f"/v1/jobs/{record.id}/results",
    )


class JobService:
    def __init__(self, store: JobStore, worker: JobWorker, settings: Settings) -> None:
        self.store = store
        self.worker = worker
        self.settings = settings

    def create(self, principal: Principal, body: bytes, idempotency_key: str | None) -> tuple[Job, bool]:
        """(the job, True when created now; False: a retry of an earlier creation)."""
        digest = hashlib.sha256(body).hexdigest()
        if idempotency_key is not None:
            earlier = self.store.find_idempotent(principal.key_id, idempotency_key)
            if earlier is not None:
                return self._replay(earlier, digest), False
        try:
            items = parse_job_input(body, max_items=self.settings.limits.max_job_items)
        except JobInputError as exc:
            details = [
                ErrorDetail(loc=["line", p.line, *p.loc], message=p.message) for p in exc.problems
            ]
            raise ApiError(422, exc.code, exc.message, details=details) from exc
        record, created = self.store.create(
            principal.key_id, items, request_sha256=digest, idempotency_key=idempotency_key
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
        return read_results(self.store.results_path(record.id), offset=offset)

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
