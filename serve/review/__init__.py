"""The review queue: doubtful products waiting for a person (store, background enqueuing).

The HTTP API over it is ``serve/api/review/`` (its service, :class:`serve.api.review.service.ReviewService`,
is the Python interface the UI uses too); ``tagsmith review`` is the command line.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.contract import Product, TagResult
from serve.review.enqueuer import ReviewEnqueuer
from serve.review.store import (
    DECIDED,
    PENDING,
    STATUSES,
    Claim,
    Conflict,
    Decision,
    EnqueueEntry,
    EnqueueReport,
    NotFound,
    ReviewItem,
    ReviewStats,
    ReviewStore,
    Status,
    Verdict,
    class_support,
    dedup_key,
)

__all__ = [
    "DECIDED", "PENDING", "STATUSES", "Claim", "Conflict", "Decision", "EnqueueEntry", "EnqueueReport",
    "NotFound", "ReviewEnqueuer", "ReviewItem", "ReviewStats", "ReviewStore", "Status", "Verdict",
    "class_support", "dedup_key", "flagged_entries",
]


def flagged_entries(
    products: Sequence[Product], results: Sequence[TagResult], source: str, index_generation: str | None,
) -> list[EnqueueEntry]:
    """Queue entries for the results that need review (the others are not enqueued)."""
    return [
        EnqueueEntry(
            product=product.model_dump(mode="json"), result=result.model_dump(mode="json"),
            source=source, taxonomy_version=result.taxonomy_version, index_generation=index_generation,
        )
        for product, result in zip(products, results, strict=True)
        if result.needs_review
    ]
