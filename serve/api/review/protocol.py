"""Models of the review-queue endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.contract import Product, TagResult
from serve.api.feedback.protocol import AttributeValues

ItemStatus = Literal["open", "claimed", "accepted", "corrected", "skipped"]


class ClaimOut(BaseModel):
    by: str = Field(description="the API key id holding the claim")
    by_name: str | None = Field(description="that key's name")
    until: datetime = Field(description="when the claim expires (the item is open again)")


class DecisionOut(BaseModel):
    verdict: Literal["accepted", "corrected", "skipped"]
    by: str = Field(description="the API key id that decided")
    by_name: str | None = Field(description="that key's name")
    at: datetime
    category: str | None = Field(description="the final category (null when skipped)")
    attribute_values: dict[str, list[str]] = Field(
        default_factory=dict, description="attribute id -> values as stored on the example (value ids for closed attributes)",
    )
    note: str | None
    feedback_id: str | None = Field(description="the feedback record made by the decision (GET /v1/feedback)")


class ReviewItemOut(BaseModel):
    id: str
    status: ItemStatus = Field(description="open (also: a claim that expired), claimed, accepted, corrected, skipped")
    source: str = Field(description="api, batch, job:<id> or tag-file")
    product: Product = Field(description="the product as it was sent")
    result: TagResult = Field(description="what the tagger answered: tags, attributes, evidence (candidates, review_reasons)")
    category: str | None = Field(description="the suggested category (the result's first tag)")
    confidence: float = Field(description="its confidence (0 when there is none)")
    reasons: list[str] = Field(description="why it needs review (the result's evidence.review_reasons)")
    taxonomy_version: int
    index_generation: str | None
    times_enqueued: int = Field(description="how often the product was flagged while this item was pending")
    created_at: datetime
    changed_at: datetime = Field(description="last (re-)enqueued")
    claim: ClaimOut | None = Field(description="who holds it (claimed only)")
    decision: DecisionOut | None = Field(description="what was decided (accepted, corrected, skipped only)")
    revision: int = Field(
        description="incremented whenever the item's content changes (the product flagged again with a new "
        "result, the decision); send it with accept / correct / skip to decide on what you saw (409 changed otherwise)",
    )


class ReviewPage(BaseModel):
    items: list[ReviewItemOut] = Field(description="pending items in review order (most valuable first), then decided ones, newest first")
    total: int
    offset: int
    limit: int


class ClaimRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = Field(default=1, ge=1, le=500, description="how many items (at most review.max_claim)")
    category: str | None = Field(
        default=None, min_length=1, max_length=512,
        description="only items whose suggested category is this node or below it",
    )
    reason: str | None = Field(default=None, min_length=1, max_length=40, description="only items flagged for this reason")


class ClaimedItems(BaseModel):
    items: list[ReviewItemOut] = Field(description="the items claimed now, most valuable first; fewer than n when the queue has fewer")


RevisionField = Field(
    default=None, ge=1, le=2**63 - 1,  # a stored 64-bit integer: larger is a 422, not a database error
    description="the item's revision you reviewed (ReviewItemOut.revision): when the item has changed since "
    "(the product was flagged again while you looked at it), nothing is decided: 409 `changed`, with the "
    "item as it is now in error.current. Omitted: decided on the item as it is when the request arrives",
)


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=2000)
    revision: int | None = RevisionField


class CorrectionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: str = Field(min_length=1, max_length=512, description="the right category: an active leaf of the current taxonomy")
    attribute_values: AttributeValues | None = Field(
        default=None, max_length=100,
        description="the product's right attribute values, as for POST /v1/feedback (attribute id or "
        "name -> value id, name or list; open attributes: the normalized text), checked against "
        "`category` (422 invalid_attribute_values). Omitted: as for feedback, an example "
        "already in the index under the product's id keeps its values that still apply; {}: none",
    )
    note: str | None = Field(default=None, max_length=2000)
    revision: int | None = RevisionField


class ReviewStatsOut(BaseModel):
    open: int = Field(description="items waiting for a reviewer (expired claims included)")
    claimed: int = Field(description="items a reviewer holds now")
    open_by_reason: dict[str, int] = Field(description="pending items (open or claimed) by review reason")
    decided_today: dict[str, int] = Field(description="decisions since 00:00 UTC, by verdict")
    decided_total: int
    oldest_pending_at: datetime | None


class ReviewEventOut(BaseModel):
    action: Literal["claim", "release", "accepted", "corrected", "skipped"]
    by: str = Field(description="the API key id")
    by_name: str | None = Field(description="that key's name")
    at: datetime
    detail: dict[str, Any] | None = Field(
        description="claim: until; release: whose claim; a decision: category, attribute_values, note, feedback_id",
    )


class ReviewHistory(BaseModel):
    item_id: str
    events: list[ReviewEventOut] = Field(description="oldest first")
