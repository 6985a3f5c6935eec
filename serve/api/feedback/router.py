"""Feedback and example endpoints (scope feedback)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from serve.api.auth import FeedbackScope
from serve.api.deps import FeedbackServiceDep
from serve.api.errors import errors
from serve.api.feedback.protocol import (
    ExampleOut,
    ExamplePage,
    FeedbackList,
    FeedbackOut,
    FeedbackRequest,
)

router = APIRouter(prefix="/v1", tags=["feedback"])
ExampleId = Annotated[str, Path(min_length=1, max_length=256, description="ids may contain '/'")]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
Limit = Annotated[int, Query(ge=1, le=500)]


@router.post(
    "/feedback", status_code=201, response_model=FeedbackOut, responses=errors(503),
    summary="Accept or correct a product's tags; the product becomes an example at once.",
)
def submit_feedback(body: FeedbackRequest, service: FeedbackServiceDep, principal: FeedbackScope) -> FeedbackOut:
    return service.submit(principal, body)


@router.get("/feedback", response_model=FeedbackList, responses=errors(503), summary="Feedback received, newest first.")
def list_feedback(service: FeedbackServiceDep, _: FeedbackScope, offset: Offset = 0, limit: Limit = 50) -> FeedbackList:
    return service.list_feedback(offset, limit)


@router.get("/examples", response_model=ExamplePage, responses=errors(503), summary="Examples in the index, paginated.")
def list_examples(
    service: FeedbackServiceDep, _: FeedbackScope, offset: Offset = 0, limit: Limit = 50,
    q: Annotated[str | None, Query(min_length=1, max_length=200, description="substring of id or text")] = None,
) -> ExamplePage:
    return service.examples(offset, limit, q)


@router.get("/examples/{example_id:path}", response_model=ExampleOut, responses=errors(404, 503), summary="One example.")
def get_example(example_id: ExampleId, service: FeedbackServiceDep, _: FeedbackScope) -> ExampleOut:
    return service.example(example_id)


@router.delete(
    "/examples/{example_id:path}", status_code=204, response_class=Response, responses=errors(404, 503),
    summary="Remove an example from the index (a new index generation is published).",
)
def delete_example(example_id: ExampleId, service: FeedbackServiceDep, _: FeedbackScope) -> Response:
    service.delete_example(example_id)
    return Response(status_code=204)
