"""Models of the batch-job endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

JOB_LINE_EXAMPLE = (
    '{"custom_id": "sku-1", "product": {"title": "Apple iPhone 12 128GB red"}}\n'
    '{"custom_id": "sku-2", "product": {"title": "Stainless steel french press 1 l"}}\n'
)
RESULT_LINE_EXAMPLE = (
    '{"custom_id": "sku-1", "result": {"tags": [...], "taxonomy_version": 1, ...}, '
    '"degraded": false, "error": null}\n'
)


class JobCounts(BaseModel):
    total: int = Field(description="lines in the input")
    succeeded: int = Field(description="results written with tags")
    failed: int = Field(description="results written with an error")


class Job(BaseModel):
    id: str
    state: Literal["queued", "running", "completed", "cancelled", "failed"]
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
