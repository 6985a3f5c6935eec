"""The API's operations as the client uses them (method, path, models), and the requests it
builds for them: one definition shared by :class:`~serve.client.Client` and
:class:`~serve.client.AsyncClient`, which only send them (and a test checks every operation
against the app's OpenAPI schema, so that the client's models cannot drift from the service's).

The models are the service's own protocol models (``serve/api/*/protocol.py``), which import
neither FastAPI nor the models."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from agent.contract import Product
from serve.api.feedback.protocol import (
    AttributeValues,
    ExampleOut,
    ExamplePage,
    FeedbackList,
    FeedbackOut,
    FeedbackRequest,
)
from serve.api.jobs.protocol import Job, JobList, JobResultLine
from serve.api.ops.protocol import Health
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
from serve.api.tags.protocol import BatchTagRequest, BatchTagResponse, TagResponse
from serve.api.taxonomy.protocol import (
    AttributeOut,
    AttributePage,
    EditRequest,
    EditResult,
    MigrationMap,
    NodeDetail,
    NodePage,
    SearchResults,
    TaxonomyInfo,
    VersionDetail,
    VersionList,
)
from serve.client.errors import error_from_response
from taxonomy.diff import TaxonomyDiff
from taxonomy.edits import Edit

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

#: ``attributes=``: "on", "off", or attribute ids / names
Attributes = str | Sequence[str] | None
#: a job's input: products (their ``id`` is the custom_id), (custom_id, product) pairs, or whole lines
JobInput = Iterable[Product | tuple[str, Product | Mapping[str, Any]] | Mapping[str, Any]]


@dataclass(frozen=True)
class Operation:
    """One operation of the API: ``path`` as in the OpenAPI schema, the request body's model,
    the response's model (None: no body, or JSONL lines of ``lines``), the query parameters
    the client sends and the success status."""

    method: str
    path: str
    response: type[BaseModel] | None
    body: type[BaseModel] | None = None
    query: tuple[str, ...] = ()
    status: int = 200
    lines: type[BaseModel] | None = None


_TAG_QUERY = ("attributes", "review", "crosswalk", "crosswalk_fallback")
_PAGE = ("offset", "limit")
OPERATIONS: dict[str, Operation] = {
    "tag": Operation("POST", "/v1/tags", TagResponse, Product, _TAG_QUERY),
    "tag_batch": Operation("POST", "/v1/tags:batch", BatchTagResponse, BatchTagRequest, _TAG_QUERY),
    "submit_job": Operation("POST", "/v1/jobs", Job, None, ("attributes", "review", "crosswalk"), 202),
    "jobs": Operation("GET", "/v1/jobs", JobList, query=_PAGE),
    "job": Operation("GET", "/v1/jobs/{job_id}", Job),
    "job_results": Operation("GET", "/v1/jobs/{job_id}/results", None, query=("offset",), lines=JobResultLine),
    "cancel_job": Operation("POST", "/v1/jobs/{job_id}/cancel", Job),
    "delete_job": Operation("DELETE", "/v1/jobs/{job_id}", None, status=204),
    "taxonomy": Operation("GET", "/v1/taxonomy", TaxonomyInfo),
    "nodes": Operation("GET", "/v1/taxonomy/nodes", NodePage, query=("parent", "include_deprecated", "version", *_PAGE)),
    "node": Operation("GET", "/v1/taxonomy/nodes/{node_id}", NodeDetail, query=("version",)),
    "attributes": Operation(
        "GET", "/v1/taxonomy/attributes", AttributePage, query=("category", "include_deprecated", "version", *_PAGE)
    ),
    "attribute": Operation("GET", "/v1/taxonomy/attributes/{attribute_id}", AttributeOut, query=("version",)),
    "search_taxonomy": Operation("GET", "/v1/taxonomy/search", SearchResults, query=("q", "limit", "include_deprecated")),
    "versions": Operation("GET", "/v1/taxonomy/versions", VersionList),
    "version": Operation("GET", "/v1/taxonomy/versions/{version}", VersionDetail),
    "diff": Operation("GET", "/v1/taxonomy/diff", TaxonomyDiff, query=("from", "to")),
    "migration_map": Operation("GET", "/v1/taxonomy/migration-map", MigrationMap, query=("from", "to")),
    "edit_taxonomy": Operation("POST", "/v1/taxonomy/edits", EditResult, EditRequest, status=201),
    "send_feedback": Operation("POST", "/v1/feedback", FeedbackOut, FeedbackRequest, status=201),
    "feedback_log": Operation("GET", "/v1/feedback", FeedbackList, query=_PAGE),
    "examples": Operation("GET", "/v1/examples", ExamplePage, query=(*_PAGE, "q")),
    "example": Operation("GET", "/v1/examples/{example_id}", ExampleOut),
    "delete_example": Operation("DELETE", "/v1/examples/{example_id}", None, status=204),
    "review_items": Operation("GET", "/v1/review/items", ReviewPage, query=("status", "category", "reason", *_PAGE)),
    "review_item": Operation("GET", "/v1/review/items/{item_id}", ReviewItemOut),
    "review_history": Operation("GET", "/v1/review/items/{item_id}/history", ReviewHistory),
    "claim_review": Operation("POST", "/v1/review/claim", ClaimedItems, ClaimRequest),
    "claim_review_item": Operation("POST", "/v1/review/items/{item_id}/claim", ReviewItemOut),
    "release_review_item": Operation("POST", "/v1/review/items/{item_id}/release", ReviewItemOut),
    "accept_review_item": Operation("POST", "/v1/review/items/{item_id}/accept", ReviewItemOut, DecisionRequest),
    "correct_review_item": Operation("POST", "/v1/review/items/{item_id}/correct", ReviewItemOut, CorrectionRequest),
    "skip_review_item": Operation("POST", "/v1/review/items/{item_id}/skip", ReviewItemOut, DecisionRequest),
    "review_stats": Operation("GET", "/v1/review/stats", ReviewStatsOut),
    "review_export": Operation("GET", "/v1/review/export", None, query=("status",), lines=ReviewItemOut),
    "ready": Operation("GET", "/readyz", Health),
}


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request to send and how to read its answer. ``idempotent``: safe to send again
    when the connection broke after it was sent; ``accept``: statuses read as answers (not
    errors); ``retry``: 429/503 may be retried."""

    name: str
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] = field(default_factory=dict)
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    idempotent: bool = True
    accept: frozenset[int] = frozenset()
    retry: bool = True


def _model(model: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: model.model_validate_json(response.content)


def _nothing(_: httpx.Response) -> None:
    return None


def _json(model: BaseModel) -> bytes:
    return model.model_dump_json(exclude_unset=True, by_alias=True).encode("utf-8")


def _segment(value: str) -> str:
    """A path parameter (ids may contain '/'), percent-encoded whole."""
    return quote(value, safe="")


def _params(**values: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        key = key.rstrip("_")  # from_ -> from
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, str | int):
            pass
        else:
            value = list(value)
        out[key] = value
    return out


def _attributes(value: Attributes) -> list[str] | None:
    return None if value is None else [value] if isinstance(value, str) else list(value)


def _call(name: str, parse: Callable[[httpx.Response], T], *, path: str | None = None, **extra: Any) -> Call[T]:
    op = OPERATIONS[name]
    if extra.get("content") is not None:  # a JSON body unless the call says otherwise (a job's JSONL)
        extra["headers"] = {"Content-Type": "application/json", **extra.get("headers", {})}
    return Call(name, op.method, path or op.path, parse, **extra)


def _get(name: str, model: type[M], path: str | None = None, **params: Any) -> Call[M]:
    return _call(name, _model(model), path=path, params=_params(**params))


def _item_path(name: str, **ids: str) -> str:
    path = OPERATIONS[name].path
    for key, value in ids.items():
        path = path.replace("{" + key + "}", _segment(value))
    return path


# ---- tagging -----------------------------------------------------------------------------
def as_product(product: Product | Mapping[str, Any] | str) -> Product:
    """A product from a model, a mapping of its fields or a title alone."""
    if isinstance(product, Product):
        return product
    if isinstance(product, str):
        return Product(title=product)
    return Product.model_validate(product)


def tag(
    product: Product | Mapping[str, Any] | str, *, attributes: Attributes = None, review: bool | None = None,
    crosswalk: str | None = None, crosswalk_fallback: bool | None = None,
) -> Call[TagResponse]:
    return _call(
        "tag", _model(TagResponse), content=_json(as_product(product)),
        params=_params(attributes=_attributes(attributes), review=review, crosswalk=crosswalk,
                       crosswalk_fallback=crosswalk_fallback),
    )


def tag_batch(
    products: Sequence[Product | Mapping[str, Any] | str], *, attributes: Attributes = None,
    review: bool | None = None, crosswalk: str | None = None, crosswalk_fallback: bool | None = None,
) -> Call[BatchTagResponse]:
    body = BatchTagRequest(products=[as_product(p) for p in products])
    return _call(
        "tag_batch", _model(BatchTagResponse), content=_json(body),
        params=_params(attributes=_attributes(attributes), review=review, crosswalk=crosswalk,
                       crosswalk_fallback=crosswalk_fallback),
    )


# ---- jobs --------------------------------------------------------------------------------
def job_lines(items: JobInput) -> bytes:
    """The JSONL body of a job: one ``{"custom_id", "product"}`` per item (a product's own
    ``id`` is its custom_id, else its position)."""
    out = []
    for position, item in enumerate(items):
        if isinstance(item, Product):
            line: Any = {"custom_id": item.id or str(position), "product": item.model_dump(mode="json", exclude_unset=True)}
        elif isinstance(item, tuple):
            custom_id, product = item
            line = {"custom_id": custom_id, "product": as_product(product).model_dump(mode="json", exclude_unset=True)}
        else:
            line = dict(item)
        out.append(json.dumps(line, ensure_ascii=False))
    return ("\n".join(out) + "\n").encode("utf-8")


def submit_job(
    items: JobInput, *, idempotency_key: str | None = None, attributes: Attributes = None,
    review: bool | None = None, crosswalk: str | None = None,
) -> Call[Job]:
    """A new job; without ``idempotency_key`` one is made, so that the client's own retries
    (503 uploads_busy, a broken connection) return the job instead of creating another."""
    key = idempotency_key or f"tagsmith-client-{uuid.uuid4().hex}"
    return _call(
        "submit_job", _model(Job), content=job_lines(items),
        headers={"Content-Type": "application/jsonl", "Idempotency-Key": key},
        params=_params(attributes=_attributes(attributes), review=review, crosswalk=crosswalk),
    )


def jobs(offset: int = 0, limit: int = 50) -> Call[JobList]:
    return _get("jobs", JobList, offset=offset, limit=limit)


def job(job_id: str) -> Call[Job]:
    return _get("job", Job, _item_path("job", job_id=job_id))


def job_results(job_id: str, offset: int = 0) -> Call[None]:
    """Streamed by the clients (JSONL of :class:`JobResultLine`)."""
    return _call("job_results", _nothing, path=_item_path("job_results", job_id=job_id), params=_params(offset=offset))


def cancel_job(job_id: str) -> Call[Job]:
    return _call("cancel_job", _model(Job), path=_item_path("cancel_job", job_id=job_id), idempotent=False)


def delete_job(job_id: str) -> Call[None]:
    return _call("delete_job", _nothing, path=_item_path("delete_job", job_id=job_id))


# ---- taxonomy ----------------------------------------------------------------------------
def taxonomy() -> Call[TaxonomyInfo]:
    return _get("taxonomy", TaxonomyInfo)


def nodes(
    parent: str | None = None, *, include_deprecated: bool | None = None, version: int | None = None,
    offset: int = 0, limit: int = 100,
) -> Call[NodePage]:
    return _get("nodes", NodePage, parent=parent, include_deprecated=include_deprecated, version=version,
                offset=offset, limit=limit)


def node(node_id: str, *, version: int | None = None) -> Call[NodeDetail]:
    return _get("node", NodeDetail, _item_path("node", node_id=node_id), version=version)


def attributes(
    category: str | None = None, *, include_deprecated: bool | None = None, version: int | None = None,
    offset: int = 0, limit: int = 100,
) -> Call[AttributePage]:
    return _get("attributes", AttributePage, category=category, include_deprecated=include_deprecated,
                version=version, offset=offset, limit=limit)


def attribute(attribute_id: str, *, version: int | None = None) -> Call[AttributeOut]:
    return _get("attribute", AttributeOut, _item_path("attribute", attribute_id=attribute_id), version=version)


def search_taxonomy(q: str, *, limit: int = 20, include_deprecated: bool | None = None) -> Call[SearchResults]:
    return _get("search_taxonomy", SearchResults, q=q, limit=limit, include_deprecated=include_deprecated)


def versions() -> Call[VersionList]:
    return _get("versions", VersionList)


def version(number: int) -> Call[VersionDetail]:
    return _get("version", VersionDetail, _item_path("version", version=str(number)))


def diff(from_version: int, to_version: int) -> Call[TaxonomyDiff]:
    return _get("diff", TaxonomyDiff, from_=from_version, to=to_version)


def migration_map(from_version: int, to_version: int) -> Call[MigrationMap]:
    return _get("migration_map", MigrationMap, from_=from_version, to=to_version)


def edit_taxonomy(
    edits: Sequence[Edit | Mapping[str, Any]], *, version: int | Literal["*"], message: str | None = None,
) -> Call[EditResult]:
    """``version``: the taxonomy version the edits were made on (If-Match; a newer one: 412
    :class:`~serve.client.errors.StaleVersion`), or ``"*"``: whatever is current."""
    body = EditRequest.model_validate(
        {"edits": [e.model_dump(mode="json") if isinstance(e, BaseModel) else dict(e) for e in edits],
         **({"message": message} if message is not None else {})}
    )
    if_match = "*" if version == "*" else f'"{int(version)}"'
    return _call("edit_taxonomy", _model(EditResult), content=_json(body), headers={"If-Match": if_match},
                 idempotent=False)


# ---- feedback and examples ---------------------------------------------------------------
def send_feedback(
    product: Product | Mapping[str, Any] | str, tags: Sequence[str], *,
    verdict: Literal["accept", "correct"] = "correct", attribute_values: AttributeValues | None = None,
    note: str | None = None,
) -> Call[FeedbackOut]:
    values: dict[str, Any] = {"product": as_product(product), "verdict": verdict, "tags": list(tags)}
    if attribute_values is not None:
        values["attribute_values"] = attribute_values
    if note is not None:
        values["note"] = note
    body = FeedbackRequest.model_validate(values)
    # the same product id twice updates one example: safe to repeat only when it has an id
    return _call("send_feedback", _model(FeedbackOut), content=_json(body), idempotent=body.product.id is not None)


def feedback_log(offset: int = 0, limit: int = 50) -> Call[FeedbackList]:
    return _get("feedback_log", FeedbackList, offset=offset, limit=limit)


def examples(q: str | None = None, *, offset: int = 0, limit: int = 50) -> Call[ExamplePage]:
    return _get("examples", ExamplePage, q=q, offset=offset, limit=limit)


def example(example_id: str) -> Call[ExampleOut]:
    return _get("example", ExampleOut, _item_path("example", example_id=example_id))


def delete_example(example_id: str) -> Call[None]:
    return _call("delete_example", _nothing, path=_item_path("delete_example", example_id=example_id))


# ---- review queue ------------------------------------------------------------------------
def review_items(
    status: Sequence[ItemStatus] | None = None, *, category: str | None = None, reason: str | None = None,
    offset: int = 0, limit: int = 50,
) -> Call[ReviewPage]:
    return _get("review_items", ReviewPage, status=status, category=category, reason=reason, offset=offset, limit=limit)


def review_item(item_id: str) -> Call[ReviewItemOut]:
    return _get("review_item", ReviewItemOut, _item_path("review_item", item_id=item_id))


def review_history(item_id: str) -> Call[ReviewHistory]:
    return _get("review_history", ReviewHistory, _item_path("review_history", item_id=item_id))


def claim_review(n: int = 1, *, category: str | None = None, reason: str | None = None) -> Call[ClaimedItems]:
    body = ClaimRequest.model_validate({"n": n, **({"category": category} if category else {}),
                                        **({"reason": reason} if reason else {})})
    return _call("claim_review", _model(ClaimedItems), content=_json(body), idempotent=False)


def _review_action(name: str, item_id: str, body: BaseModel | None = None) -> Call[ReviewItemOut]:
    return _call(name, _model(ReviewItemOut), path=_item_path(name, item_id=item_id),
                 content=None if body is None else _json(body), idempotent=False)


def claim_review_item(item_id: str) -> Call[ReviewItemOut]:
    return _review_action("claim_review_item", item_id)


def release_review_item(item_id: str) -> Call[ReviewItemOut]:
    return _review_action("release_review_item", item_id)


def _decision(note: str | None, revision: int | None) -> DecisionRequest:
    return DecisionRequest.model_validate({k: v for k, v in (("note", note), ("revision", revision)) if v is not None})


def accept_review_item(item_id: str, *, note: str | None = None, revision: int | None = None) -> Call[ReviewItemOut]:
    return _review_action("accept_review_item", item_id, _decision(note, revision))


def skip_review_item(item_id: str, *, note: str | None = None, revision: int | None = None) -> Call[ReviewItemOut]:
    return _review_action("skip_review_item", item_id, _decision(note, revision))


def correct_review_item(
    item_id: str, category: str, *, attribute_values: AttributeValues | None = None, note: str | None = None,
    revision: int | None = None,
) -> Call[ReviewItemOut]:
    values = {"category": category, "attribute_values": attribute_values, "note": note, "revision": revision}
    body = CorrectionRequest.model_validate({k: v for k, v in values.items() if v is not None})
    return _review_action("correct_review_item", item_id, body)


def review_stats() -> Call[ReviewStatsOut]:
    return _get("review_stats", ReviewStatsOut)


def review_export(status: Sequence[ItemStatus] | None = None) -> Call[None]:
    """Streamed by the clients (JSONL of :class:`ReviewItemOut`)."""
    return _call("review_export", _nothing, params=_params(status=status))


# ---- operations --------------------------------------------------------------------------
def _health(response: httpx.Response) -> Health:
    if response.status_code != 200 and b'"error"' in response.content[:20]:
        raise error_from_response(response)  # a 503 of the error shape (overloaded, …)
    return Health.model_validate_json(response.content)


def ready() -> Call[Health]:
    """``/readyz``: its answer whether ready (200) or not (503, ``status`` says why), never retried."""
    return _call("ready", _health, accept=frozenset({503}), retry=False)
