"""Models of the operations endpoints (``/healthz``, ``/readyz``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Status = Literal["ok", "starting", "unavailable", "dead"]


class CalibrationInfo(BaseModel):
    """How the index generation in use is calibrated (fitted at its publication on a
    cross-fitted held-out part of its pool; ``method: default`` when the pool was too small)."""

    method: str = Field(description="cross-fitted, or default (too few examples to hold out; see note)")
    ece: float | None = Field(description="held-out expected calibration error, percent (10 bins)")
    temperature: float
    knn_temperature: float
    review_threshold: float = Field(description="the threshold in use (a configured one wins over the fitted one)")
    review_threshold_source: str = Field(description="configured, fitted, or default")
    target_precision: float
    held_out: int = Field(description="held-out examples the calibration was fitted on")
    far_similarity: float | None = Field(description="nearest-example similarity below which far_from_examples is flagged")
    refit_pending: bool
    note: str


class Health(BaseModel):
    status: Status
    checks: dict[str, str] = Field(
        description="one line per part: engine, taxonomy, index, jobs_worker, calibration, llm (its canary), "
        "and llm_endpoints with a pool of LLM servers (how many are healthy, why the others are out)"
    )
    calibration: CalibrationInfo | None = None
