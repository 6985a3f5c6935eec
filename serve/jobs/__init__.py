"""Batch jobs for large catalogs: persistent, resumable, each custom_id exactly once."""

from serve.jobs.input import JobInputError, JobItem, parse_job_input
from serve.jobs.store import JobRecord, JobState, JobStore, read_results
from serve.jobs.worker import JobWorker, scan_results

__all__ = [
    "JobInputError",
    "JobItem",
    "JobRecord",
    "JobState",
    "JobStore",
    "JobWorker",
    "parse_job_input",
    "read_results",
    "scan_results",
]
