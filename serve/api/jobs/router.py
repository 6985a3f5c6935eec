"""Batch-job endpoints."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from serve.api.auth import TagsScope
from serve.api.deps import JobServiceDep
from serve.api.errors import ERRORS, ApiError, errors
from serve.api.jobs.protocol import JOB_LINE_EXAMPLE, RESULT_LINE_EXAMPLE, Job, JobList
from serve.api.review.params import ReviewQuery
from serve.api.tags.params import ATTRIBUTES_422, AttributesQuery, CrosswalkQuery

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
JobId = Annotated[str, Path(min_length=1, max_length=64, description="the id returned at creation")]
JSONL = "application/jsonl"

_JOB_INPUT: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": 'JSONL: one {"custom_id": "…", "product": {…}} per line (at most '
        "limits.max_job_items lines, limits.max_job_bytes bytes), optionally with \"attributes\" "
        "(on, off, or a list of attribute ids / names) for that line instead of the job's "
        "`?attributes=`; validated whole before the job is accepted. "
        "Declared as text/plain, UTF-8; sent as application/jsonl or application/x-ndjson it reads the same",
        # only text/plain is declared: fuzzers and generated clients cannot serialize a media
        # type they do not know (schemathesis refuses the whole operation), and every one of
        # them can send a string as text/plain
        "content": {"text/plain": {"schema": {"type": "string"}, "example": JOB_LINE_EXAMPLE}},
    },
    # OpenAPI links (merged into the 202 response): what a client, or a stateful fuzzer, can
    # do next with the job it created
    "responses": {"202": {"links": {
        name: {"operationId": operation, "parameters": {"job_id": "$response.body#/id"}, "description": text}
        for name, operation, text in (
            ("GetJob", "get_job_v1_jobs__job_id__get", "its state and progress"),
            ("GetJobResults", "job_results_v1_jobs__job_id__results_get", "its results so far"),
            ("CancelJob", "cancel_job_v1_jobs__job_id__cancel_post", "stop it"),
            ("DeleteJob", "delete_job_v1_jobs__job_id__delete", "delete it and its files"),
        )
    }}},
}
_RESULTS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": 'JSONL, one line per custom_id: {"custom_id", "result" (the tagging contract, '
        'attributes included) or null, "degraded", "error" ({"code", "message"}) or null}; in input order',
        "content": {JSONL: {"schema": {"type": "string"}, "example": RESULT_LINE_EXAMPLE}},
    },
    **errors(404),
}

_CREATE_ERRORS = {**errors(503), **ATTRIBUTES_422, 503: {
    **ERRORS[503], "description": "not ready yet, or `uploads_busy`: limits.max_concurrent_uploads "
    "uploads are being received (the bound is the server's, not a key's rate: not 429); see Retry-After",
}}


@router.post(
    "", status_code=202, response_model=Job, responses=_CREATE_ERRORS, openapi_extra=_JOB_INPUT,
    summary="Create a tagging job from JSONL; returns at once (202) with the job id.",
    description="Send `Idempotency-Key` to make retries safe: the same key with the same body "
    "returns the job created first (header `Idempotent-Replayed: true`); with another body, 422.\n\n"
    "The body is checked line by line as it arrives; reading stops at the first 20 invalid lines "
    "or past `limits.max_job_items` lines (422, nothing created). The server receives at most "
    "`limits.max_concurrent_uploads` uploads at once: beyond, `503 uploads_busy` with `Retry-After`, "
    "before the body is read.\n\n`?attributes=` chooses the attributes tagged for every line that "
    "does not say (as for POST /v1/tags); an Idempotency-Key retry must repeat it too.\n\n"
    "`?review=true` puts the job's results flagged needs_review into the review queue (source "
    "`job:<id>`; default: the review.enqueue setting); a retry must repeat it too.\n\n"
    "`?crosswalk=` adds the top tag in a second taxonomy to every result (a line's own `crosswalk` "
    "field wins); a retry must repeat it too.",
)
async def create_job(
    request: Request,
    response: Response,
    service: JobServiceDep,
    principal: TagsScope,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")
    ] = None,
    attributes: AttributesQuery = None,
    review: ReviewQuery = None,
    crosswalk: CrosswalkQuery = None,
) -> Job:
    with service.upload_slot():
        try:
            job, created = await service.create(
                principal, request.stream(), idempotency_key, attributes, review, crosswalk=crosswalk
            )
        except ClientDisconnect:
            # nobody reads this answer; a 4xx keeps an abandoned upload out of the 5xx counts
            raise ApiError(422, "upload_incomplete", "the client left before the end of the upload") from None
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return job


@router.get("", response_model=JobList, responses=errors(503), summary="Your jobs, newest first.")
def list_jobs(
    service: JobServiceDep, principal: TagsScope,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JobList:
    return service.list(principal, offset, limit)


@router.get("/{job_id}", response_model=Job, responses=errors(404, 503), summary="State, counts and progress of a job.")
def get_job(job_id: JobId, service: JobServiceDep, principal: TagsScope) -> Job:
    return service.get(principal, job_id)


@router.get(
    "/{job_id}/results", response_class=StreamingResponse, responses={**_RESULTS, **errors(404, 503)},
    summary="The results written so far (JSONL stream); `offset` skips lines already fetched.",
)
def job_results(
    job_id: JobId, service: JobServiceDep, principal: TagsScope,
    offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
) -> StreamingResponse:
    return StreamingResponse(service.results(principal, job_id, offset), media_type=JSONL)


@router.post(
    "/{job_id}/cancel", response_model=Job, responses=errors(404, 409, 503),
    summary="Cancel a queued or running job (results written so far stay available).",
)
def cancel_job(job_id: JobId, service: JobServiceDep, principal: TagsScope) -> Job:
    return service.cancel(principal, job_id)


@router.delete(
    "/{job_id}", status_code=204, response_class=Response, responses=errors(404, 409, 503),
    summary="Delete a finished job and its files.",
)
def delete_job(job_id: JobId, service: JobServiceDep, principal: TagsScope) -> Response:
    service.delete(principal, job_id)
    return Response(status_code=204)
