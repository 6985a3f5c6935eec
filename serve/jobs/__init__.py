"""Batch jobs for large catalogs: persistent, resumable, each custom_id exactly once."""

from serve.jobs.ingest import JobUpload
from serve.jobs.input import JobInputError, JobInputParser, JobItem
from serve.jobs.store import JobRecord, JobState, JobStore, Lease, ResultRow, StagedJob
from serve.jobs.worker import JobWorker

__all__ = [
    "JobInputError",
    "JobInputParser",
    "JobItem",
    "JobRecord",
    "JobState",
    "JobStore",
    "JobUpload",
    "JobWorker",
    "Lease",
    "ResultRow",
    "StagedJob",
]
