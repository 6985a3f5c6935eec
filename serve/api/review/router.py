"""Review-queue endpoints (scope feedback, or admin): list, claim, decide, export, stats."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from serve.api.auth import FeedbackScope
from serve.api.deps import ReviewServiceDep
from serve.api.errors import ERRORS, errors
from serve.api.limits import cost_note
from serve.api.review.protocol import (
    ClaimedItems,
    ClaimRequest,
    CorrectionRequest,
    DecisionRequest,
    ItemStatus,
    ReviewHistory,
    ReviewItemOut,
    ReviewPage,
    ReviewStatsOut,
)

router = APIRouter(prefix="/v1/review", tags=["review"])
ItemId = Annotated[str, Path(min_length=1, max_length=64, description="a review item id (rv_…)")]
StatusQuery = Annotated[
    list[ItemStatus] | None,
    Query(max_length=5, description="repeat for several; default: open and claimed (the queue). "
          "An item whose claim expired is open"),
]
CategoryQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=512, description="only items whose suggested (pending) or final (decided) "
          "category is this node or below it (422 unknown_category: not a node of the taxonomy)"),
]
ReasonQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=40, description="only items flagged for this reason (low_confidence, "
          "thin_vote, far_from_examples, unreadable_text, …)"),
]
JSONL = "application/jsonl"


def _e409(text: str) -> dict[int | str, dict[str, Any]]:
    return {409: {**ERRORS[409], "description": text}}


_CLAIM_409 = _e409("`claimed`: another reviewer holds the item; `already_decided`")
_CHANGED = ("; `changed`: the item is no longer at the `revision` you sent (the product was flagged again "
            "with a new result while you looked at it): nothing was decided; `error.current` holds the item as it "
            "is now (its new suggestion and revision)")
_DECIDE_409 = _e409("`claimed`: another reviewer holds the item; `already_decided`: it was decided already" + _CHANGED)
_FILTER_422: dict[int | str, dict[str, Any]] = {422: {**ERRORS[422], "description": "invalid request; `unknown_category`: the category "
                     "filter is not a node of the taxonomy in use"}}
_CORRECT_422: dict[int | str, dict[str, Any]] = {422: {**ERRORS[422], "description": "invalid request; `invalid_tags`: the category is not "
                      "an active leaf of the current taxonomy (with a suggestion when one is close); "
                      "`invalid_attribute_values`: an attribute the category does not have, or a value "
                      "it does not allow"}}
_ACCEPT_ERRORS = {
    **errors(404, 503), **_e409("`claimed`, `already_decided`, or `nothing_to_accept`: the item has no "
                                "suggested category (correct or skip it)" + _CHANGED),
    422: {**ERRORS[422], "description": "invalid request; `invalid_tags` / `invalid_attribute_values`: "
          "the suggestion is no longer valid in the current taxonomy (correct it)"},
}


@router.get(
    "/items", response_model=ReviewPage, responses={**errors(503), **_FILTER_422},
    summary="The queue: doubtful products, most valuable review first.",
    description="Pending items (open, claimed) in the order of expected value of a review "
    "(uncertainty, how many waiting products share the same doubt, rarity of the categories in "
    "doubt; agent/review_priority.py), then decided ones, newest decision first.",
)
def list_items(
    service: ReviewServiceDep, _: FeedbackScope, status: StatusQuery = None, category: CategoryQuery = None,
    reason: ReasonQuery = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0, limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ReviewPage:
    return service.list_items(statuses=status, category=category, reason=reason, offset=offset, limit=limit)


@router.get("/items/{item_id}", response_model=ReviewItemOut, responses=errors(404, 503), summary="One review item.")
def get_item(item_id: ItemId, service: ReviewServiceDep, _: FeedbackScope) -> ReviewItemOut:
    return service.get(item_id)


@router.get(
    "/items/{item_id}/history", response_model=ReviewHistory, responses=errors(404, 503),
    summary="The item's audit trail: claims, releases, the decision; who and when.",
)
def item_history(item_id: ItemId, service: ReviewServiceDep, _: FeedbackScope) -> ReviewHistory:
    return service.history(item_id)


@router.post(
    "/claim", response_model=ClaimedItems, responses={**errors(503), **_FILTER_422},
    summary="Claim the next n open items (most valuable first) for review.claim_ttl_s.",
    description="Concurrent reviewers never get the same item. A claim that expires returns the "
    "item to the queue. Fewer than n (or none) when the queue holds fewer; at most review.max_claim.",
)
def claim_next(body: ClaimRequest, service: ReviewServiceDep, principal: FeedbackScope) -> ClaimedItems:
    return service.claim_next(principal, body)


@router.post(
    "/items/{item_id}/claim", response_model=ReviewItemOut, responses={**errors(404, 503), **_CLAIM_409},
    summary="Claim one item (again: extends your claim); 409 when another reviewer holds it.",
)
def claim_item(item_id: ItemId, service: ReviewServiceDep, principal: FeedbackScope) -> ReviewItemOut:
    return service.claim(principal, item_id)


@router.post(
    "/items/{item_id}/release", response_model=ReviewItemOut,
    responses={**errors(404, 503), **_e409("`not_claimed`; `claimed`: another reviewer's claim (only an admin "
                                            "may release it); `already_decided`")},
    summary="Give your claim back: the item is open again.",
)
def release_item(item_id: ItemId, service: ReviewServiceDep, principal: FeedbackScope) -> ReviewItemOut:
    return service.release(principal, item_id)


@router.post(
    "/items/{item_id}/accept", response_model=ReviewItemOut, responses=_ACCEPT_ERRORS,
    summary="The suggested category and attribute values are right.",
    description="Recorded with your key and the time; the product becomes an example of the index "
    "exactly as POST /v1/feedback (verdict accept) makes it. Allowed on an open item or one you hold.",
)
def accept_item(
    item_id: ItemId, service: ReviewServiceDep, principal: FeedbackScope, body: DecisionRequest | None = None,
) -> ReviewItemOut:
    return service.accept(principal, item_id, body)


@router.post(
    "/items/{item_id}/correct", response_model=ReviewItemOut,
    responses={**errors(404, 503), **_DECIDE_409, **_CORRECT_422},
    summary="The right category (and attribute values), validated against the current taxonomy.",
    description="Recorded with your key and the time; the product becomes an example with these "
    "tags exactly as POST /v1/feedback (verdict correct) makes it: the next tag of this product, "
    "and of similar ones, uses it.",
)
def correct_item(
    item_id: ItemId, body: CorrectionRequest, service: ReviewServiceDep, principal: FeedbackScope,
) -> ReviewItemOut:
    return service.correct(principal, item_id, body)


@router.post(
    "/items/{item_id}/skip", response_model=ReviewItemOut, responses={**errors(404, 503), **_DECIDE_409},
    summary="Take the item out of the queue without teaching anything.",
)
def skip_item(
    item_id: ItemId, service: ReviewServiceDep, principal: FeedbackScope, body: DecisionRequest | None = None,
) -> ReviewItemOut:
    return service.skip(principal, item_id, body)


@router.get(
    "/export", response_class=StreamingResponse,
    responses={200: {"description": "JSONL: one review item per line (as GET /v1/review/items/{id}), oldest first",
                     "content": {JSONL: {"schema": {"type": "string"}}}}, **errors(503)},
    summary="Every item (of these statuses), streamed as JSONL.",
    description=cost_note("/v1/review/export"),
)
def export_items(
    service: ReviewServiceDep, _: FeedbackScope,
    status: Annotated[list[ItemStatus] | None, Query(max_length=5, description="default: every status")] = None,
) -> StreamingResponse:
    return StreamingResponse(service.export(status), media_type=JSONL)


@router.get("/stats", response_model=ReviewStatsOut, responses=errors(503), summary="Queue counts.")
def stats(service: ReviewServiceDep, _: FeedbackScope) -> ReviewStatsOut:
    return service.stats()
