"""Batch jobs for large catalogs: persistent, resumable, each custom_id exactly once."""

from serve.jobs.ingest import JobUpload
from serve.jobs.input import JobInputError, JobInputParser, JobItem
from serve.jobs.store import JobRecord, JobState, JobStore, StagedJob, read_results
from serve.jobs.worker import JobWorker, scan_results

__all__ = [
    "JobInputError",
    "JobInputParser",
    "JobItem",
    "JobRecord",
    "JobState",
    "JobStore",
    "JobUpload",
    "JobWorker",
    "StagedJob",
    "read_results",
    "scan_results",
]
