"""Models of the batch-job endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from agent.contract import TagResult

JOB_LINE_EXAMPLE = (
    '{"custom_id": "sku-1", "product": {"title": "Apple iPhone 12 128GB red"}}\n'
    '{"custom_id": "sku-2", "product": {"title": "Stainless steel french press 1 l"}}\n'
)
RESULT_LINE_EXAMPLE = (
    '{"custom_id": "sku-1", "result": {"tags": [...], "taxonomy_version": 1, ...}, '
    '"degraded": false, "error": null}\n'
)


JobState = Literal["queued", "running", "completed", "cancelled", "failed"]
#: the states a job does not leave
TERMINAL: frozenset[JobState] = frozenset({"completed", "cancelled", "failed"})


class JobCounts(BaseModel):
    total: int = Field(description="lines in the input")
    succeeded: int = Field(description="results written with tags")
    failed: int = Field(description="results written with an error")


class Job(BaseModel):
    id: str
    state: JobState
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    counts: JobCounts
    progress: float = Field(ge=0.0, le=1.0, description="(succeeded + failed) / total")
    message: str | None = Field(description="why a job failed or is waiting")
    results_url: str = Field(description="GET it for the results so far (JSONL)")
    review: bool | None = Field(
        default=None, description="flagged results go into the review queue (`?review=`); null: the review.enqueue setting",
    )


class JobList(BaseModel):
    items: list[Job]
    total: int
    offset: int
    limit: int


class JobItemError(BaseModel):
    code: str = Field(description="e.g. tagging_failed")
    message: str


class JobResultLine(BaseModel):
    """One line of ``GET /v1/jobs/{id}/results`` (JSONL): each ``custom_id`` once, in input order."""

    custom_id: str
    result: TagResult | None = Field(description="the tagging contract (as POST /v1/tags, without `degraded`); null on an error")
    degraded: bool = Field(description="the LLM backend was unavailable: the retrieval-only answer")
    error: JobItemError | None = Field(description="why this line has no result; null otherwise")
