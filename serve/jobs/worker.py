"""The job worker: one thread that tags queued jobs, resuming interrupted ones first.

Exactly once per ``custom_id``, whatever kills the process: before tagging, the worker
reads ``results.jsonl`` (cutting a torn last line: a line is either complete or gone),
skips every custom_id found there, and appends each next batch as complete, fsynced
lines. A batch that was being written when the process died is simply tagged again.
The counts in the database follow the file and are recomputed from it on resume.

One worker per data directory: it holds an exclusive ``flock`` on ``jobs/.worker.lock``
(released by the kernel when the process dies, even by SIGKILL).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from agent.contract import TagResult
from retrieval.durable import append_lines, complete_lines
from serve.jobs.input import JobItem
from serve.jobs.store import JobRecord, JobStore, result_line
from serve.metrics import Metrics

log = logging.getLogger("tagsmith.jobs")

Tag = Callable[[Sequence[JobItem]], list[TagResult]]
#: called with each batch's successful results once they are written (the review queue)
OnResults = Callable[[JobRecord, Sequence[JobItem], Sequence[TagResult]], None]
MAX_BACKOFF_S = 30.0


def scan_results(path: Path) -> tuple[set[str], int, int]:
    """(custom_ids done, succeeded, failed) of a results file, after cutting a torn tail."""
    done: set[str] = set()
    failed = 0
    for line in complete_lines(path):
        record = json.loads(line)
        done.add(str(record["custom_id"]))
        failed += record.get("error") is not None
    return done, len(done) - failed, failed


class JobWorker:
    def __init__(
        self, store: JobStore, tag: Tag, metrics: Metrics, *, batch_size: int = 32,
        fail_when_degraded: bool = True, poll_s: float = 1.0, on_results: OnResults | None = None,
    ) -> None:
        self.store = store
        self.tag = tag
        self.metrics = metrics
        self.batch_size = batch_size
        self.fail_when_degraded = fail_when_degraded
        self.poll_s = poll_s
        self.on_results = on_results
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.failure: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="tagsmith-jobs", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.failure is None

    # ---- the loop ----------------------------------------------------------------------
    def _main(self) -> None:
        try:
            lock = self._lock()
            if lock is None:
                return
            with lock:
                self.store.remove_orphans()
                while not self._stop.is_set():
                    try:
                        runnable = self.store.runnable()
                        if runnable:
                            self._run_job(runnable[0])
                            continue
                    except Exception:  # e.g. a busy database or a full disk: retry, do not die
                        log.exception("jobs worker step failed; retrying")
                        self._stop.wait(MAX_BACKOFF_S)
                        continue
                    self._wake.wait(self.poll_s)
                    self._wake.clear()
        except Exception as exc:  # reported by /healthz: the jobs worker is dead
            self.failure = f"jobs worker died: {exc!r}"
            log.exception("jobs worker died")

    def _lock(self) -> IO[str] | None:
        """The worker lock, waiting while another process holds it; None when stopping."""
        fd = os.open(self.store.root / ".worker.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fh = os.fdopen(fd, "a+")
        while not self._stop.is_set():
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fh
            except BlockingIOError:
                self._stop.wait(self.poll_s)
        fh.close()
        return None

    def _run_job(self, job: JobRecord) -> None:
        store = self.store
        if job.state == "queued" and not store.transition(job.id, "running", only_from=frozenset({"queued"})):
            return  # cancelled meanwhile
        path = store.results_path(job.id)
        try:
            done, succeeded, failed = scan_results(path)
            todo = self._batches(job.id, done)  # read as the job goes: never the whole input at once
            chunk = next(todo, None)
        except (OSError, ValueError, KeyError) as exc:
            self._unreadable(job, exc)
            return
        store.set_progress(job.id, succeeded, failed)
        log.info("job running", extra={"job": job.id, "todo": job.total - len(done), "done": len(done)})
        backoff = 1.0
        while chunk is not None:
            if self._stop.is_set():
                return
            current = store.get(job.id)
            if current is None or current.state != "running":
                return  # cancelled or deleted
            lines = self._tag_lines(chunk)
            if lines is None:  # the LLM is down and degraded answers are not wanted: wait
                store.set_progress(job.id, succeeded, failed, "waiting: the LLM backend is unavailable")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            backoff = 1.0
            append_lines(path, [line for line, _, _ in lines])
            self._hand_over(job, chunk, lines)
            errors = sum(1 for _, ok, _ in lines if not ok)
            succeeded, failed = succeeded + len(lines) - errors, failed + errors
            self.metrics.job_items.labels("ok").inc(len(lines) - errors)
            self.metrics.job_items.labels("error").inc(errors)
            store.set_progress(job.id, succeeded, failed)
            try:
                chunk = next(todo, None)
            except (OSError, ValueError) as exc:
                self._unreadable(job, exc)
                return
        if store.transition(job.id, "completed", only_from=frozenset({"running"})):
            log.info("job completed", extra={"job": job.id, "succeeded": succeeded, "failed": failed})

    def _batches(self, job_id: str, done: set[str]) -> Iterator[list[JobItem]]:
        """The items not done yet, ``batch_size`` at a time, read from the input as needed."""
        batch: list[JobItem] = []
        for item in self.store.items(job_id):
            if item.custom_id not in done:
                batch.append(item)
                if len(batch) == self.batch_size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def _unreadable(self, job: JobRecord, exc: Exception) -> None:
        self.store.transition(job.id, "failed", only_from=frozenset({"running"}), message=f"job files unreadable: {exc}")
        log.error("job files unreadable", extra={"job": job.id, "error": str(exc)})

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
