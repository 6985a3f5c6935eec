"""Tagging endpoints: parse, call the service, return (errors are mapped by the handlers)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from agent.contract import Product
from serve.api.auth import TagsScope
from serve.api.deps import TagServiceDep
from serve.api.errors import errors
from serve.api.review.params import ReviewQuery
from serve.api.tags.params import ATTRIBUTES_422, AttributesQuery, CrosswalkQuery, FallbackQuery
from serve.api.tags.protocol import (
    MAX_BATCH_ITEMS_HEADER,
    BatchTagRequest,
    BatchTagResponse,
    TagResponse,
)

router = APIRouter(prefix="/v1", tags=["tagging"])
_BATCH_LIMIT = {MAX_BATCH_ITEMS_HEADER: {
    "description": "limits.max_batch_items: the most products one batch may hold (also on its 422 batch_too_large)",
    "schema": {"type": "integer"},
}}


@router.post(
    "/tags", response_model=TagResponse, responses={**errors(503), **ATTRIBUTES_422},
    summary="Tag one product.",
    description="Returns the agent's output contract: tags (nodes of the taxonomy, with path and "
    "confidence), the chosen category's attributes with the values found (`attributes`; "
    "`?attributes=off|on|<id or name>…` chooses which), needs_review, the taxonomy version "
    "used, the pipeline and its evidence. `?review=true` puts a result flagged needs_review into "
    "the review queue (`/v1/review`, source `api`); `?crosswalk=NAME` adds the top tag in a second "
    "taxonomy (`crosswalk`: status mapped, ancestor or unmapped).",
)
async def tag_product(
    product: Product, service: TagServiceDep, _: TagsScope, attributes: AttributesQuery = None,
    review: ReviewQuery = None, crosswalk: CrosswalkQuery = None, crosswalk_fallback: FallbackQuery = True,
) -> TagResponse:
    return await service.tag_one(product, attributes, review, crosswalk=crosswalk, fallback=crosswalk_fallback)


@router.post(
    "/tags:batch", response_model=BatchTagResponse,
    responses={200: {"headers": _BATCH_LIMIT}, **errors(503), **ATTRIBUTES_422},
    summary="Tag up to limits.max_batch_items products; results in input order.",
    description="The same contract per product as POST /v1/tags; `?attributes=` applies to "
    "every product of the batch; `?review=true` puts the flagged ones into the review queue (source `batch`).",
)
async def tag_batch(
    body: BatchTagRequest, response: Response, service: TagServiceDep, _: TagsScope, attributes: AttributesQuery = None,
    review: ReviewQuery = None, crosswalk: CrosswalkQuery = None, crosswalk_fallback: FallbackQuery = True,
) -> BatchTagResponse:
    response.headers.update(service.batch_limit_header())
    # the body's crosswalk, when given, wins over ?crosswalk=
    return await service.tag_batch(
        body.products, attributes, review, crosswalk=body.crosswalk or crosswalk, fallback=crosswalk_fallback
    )
