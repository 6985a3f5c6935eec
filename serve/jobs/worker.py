"""The job worker of one process: a thread that claims batches of any active job (of any
replica, when the database is shared), tags them and writes their results.

Exactly once per ``custom_id``, whatever kills a process (see :mod:`serve.jobs.store`): a
batch is taken under a lease of ``jobs.lease_s`` seconds, which a second thread extends
while the batch is being tagged; the results, the counts and the batch's ``done`` are
written in one transaction that checks the lease is still this worker's. A worker killed
mid-batch writes nothing, and its batch is taken again, by any worker, once the lease has
expired; a worker that stops cleanly gives its lease back at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence

from agent.contract import TagResult
from serve.jobs.input import JobItem
from serve.jobs.store import ACTIVE, JobRecord, JobStore, Lease, ResultRow, result_line
from serve.metrics import Metrics

log = logging.getLogger("tagsmith.jobs")

Tag = Callable[[Sequence[JobItem]], list[TagResult]]
#: called with each batch's successful results once they are written (the review queue)
OnResults = Callable[[JobRecord, Sequence[JobItem], Sequence[TagResult]], None]
MAX_BACKOFF_S = 30.0


class JobWorker:
    def __init__(
        self, store: JobStore, tag: Tag, metrics: Metrics, *, lease_s: float = 30.0,
        fail_when_degraded: bool = True, poll_s: float = 1.0, on_results: OnResults | None = None,
        name: str | None = None,
    ) -> None:
        """``lease_s``: how long a claimed batch stays this worker's without a heartbeat (it
        is extended every third of it while tagging); ``name``: the worker in the lease rows
        (default host:pid)."""
        self.store = store
        self.tag = tag
        self.metrics = metrics
        self.lease_s = lease_s
        self.fail_when_degraded = fail_when_degraded
        self.poll_s = poll_s
        self.on_results = on_results
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._heart: threading.Thread | None = None
        self._held: Lease | None = None
        self._lost = threading.Event()  # the held lease was taken by another worker
        self._held_lock = threading.Lock()
        self.failure: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="tagsmith-jobs", daemon=True)
        self._heart = threading.Thread(target=self._heartbeat, name="tagsmith-jobs-lease", daemon=True)
        self._thread.start()
        self._heart.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in (self._thread, self._heart):
            if thread is not None:
                thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.failure is None

    # ---- the loop ----------------------------------------------------------------------
    def _main(self) -> None:
        try:
            try:
                self.store.import_files()  # jobs of an older tagsmith's file layout
                self.store.remove_orphans()
            except Exception:  # e.g. the database not reachable yet: the next start tries again
                log.exception("jobs: importing older job files or removing orphans failed")
            backoff = 1.0
            while not self._stop.is_set():
                try:
                    lease = self.store.claim(self.name, self.lease_s)
                    if lease is not None:
                        self._run(lease)
                        backoff = 1.0
                        continue
                except Exception:  # e.g. the database unreachable: retry, do not die
                    log.exception("jobs worker step failed; retrying")
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                    continue
                self._wake.wait(self.poll_s)
                self._wake.clear()
        except Exception as exc:  # reported by /healthz: the jobs worker is dead
            self.failure = f"jobs worker died: {exc!r}"
            log.exception("jobs worker died")

    def _heartbeat(self) -> None:
        """Extend the held lease every third of ``lease_s``."""
        while not self._stop.wait(self.lease_s / 3):
            with self._held_lock:
                lease = self._held
            if lease is None:
                continue
            try:
                if not self.store.extend(lease, self.lease_s):
                    self._lost.set()
            except Exception:  # the database briefly away: the next beat tries again
                log.exception("jobs lease heartbeat failed")

    def _hold(self, lease: Lease | None) -> None:
        with self._held_lock:
            self._held = lease
            self._lost.clear()

    def _run(self, lease: Lease) -> None:
        store = self.store
        if lease.job_queued:
            store.transition(lease.job_id, "running", only_from=frozenset({"queued"}))
        try:
            items = lease.parsed()
        except ValueError as exc:
            self._unreadable(lease.job_id, exc)
            return
        self._hold(lease)
        try:
            backoff = 1.0
            while (lines := self._tag_lines([item for _, item in items])) is None:
                # the LLM is down and degraded answers are not wanted: keep the lease, wait
                store.set_message(lease.job_id, "waiting: the LLM backend is unavailable")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                if self._stop.is_set() or self._lost.is_set():
                    if not self._lost.is_set():
                        store.release(lease)  # stopping: another worker may take it at once
                    return
            rows = [ResultRow(seq, item.custom_id, ok, line) for (seq, item), (line, ok, _) in zip(items, lines, strict=True)]
            outcome = store.complete(lease, rows)
        finally:
            self._hold(None)
        if outcome is None:
            log.info("job batch not written (cancelled, deleted or lease lost)",
                     extra={"job": lease.job_id, "batch": lease.batch})
            return
        errors = sum(1 for row in rows if not row.ok)
        self.metrics.job_items.labels("ok").inc(len(rows) - errors)
        self.metrics.job_items.labels("error").inc(errors)
        record = store.get(lease.job_id)
        if record is not None:
            self._hand_over(record, [item for _, item in items], lines)
            if outcome == "completed":
                log.info("job completed", extra={"job": record.id, "succeeded": record.succeeded, "failed": record.failed})

    def _unreadable(self, job_id: str, exc: Exception) -> None:
        self.store.transition(job_id, "failed", only_from=ACTIVE, message=f"job input unreadable: {exc}")
        log.error("job input unreadable", extra={"job": job_id, "error": str(exc)})

    def _hand_over(
        self, job: JobRecord, chunk: Sequence[JobItem], lines: Sequence[tuple[str, bool, TagResult | None]],
    ) -> None:
        """Give the batch's results to ``on_results``; its failure never fails the job."""
        if self.on_results is None:
            return
        done = [(item, res) for item, (_, _, res) in zip(chunk, lines, strict=True) if res is not None]
        try:
            self.on_results(job, [item for item, _ in done], [res for _, res in done])
        except Exception:
            log.exception("job results hand-over failed", extra={"job": job.id})

    def _tag_lines(self, chunk: Sequence[JobItem]) -> list[tuple[str, bool, TagResult | None]] | None:
        """(result line, ok, result) per item; None when the batch should wait for the LLM. An
        item that cannot be tagged gets an error line; the others of its batch their results."""
        try:
            results = self.tag(chunk)
        except Exception as exc:
            if len(chunk) == 1:
                log.exception("job item failed", extra={"custom_id": chunk[0].custom_id})
                error = {"code": "tagging_failed", "message": str(exc)[:500] or type(exc).__name__}
                return [(result_line(chunk[0].custom_id, None, error, False), False, None)]
            out: list[tuple[str, bool, TagResult | None]] = []
            for item in chunk:  # find the item that fails
                lines = self._tag_lines([item])
                if lines is None:
                    return None
                out.extend(lines)
            return out
        if self.fail_when_degraded and any(r.evidence.llm.degraded for r in results):
            return None
        return [
            (result_line(item.custom_id, res.model_dump(mode="json"), None, res.evidence.llm.degraded), True, res)
            for item, res in zip(chunk, results, strict=True)
        ]
