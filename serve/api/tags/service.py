"""Tagging: products in, results out, through the batching queue."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from agent.contract import AttributeSelection, Product
from serve.api.errors import ApiError, ErrorDetail, retry_after
from serve.api.tags.protocol import MAX_BATCH_ITEMS_HEADER, BatchTagResponse, TagResponse
from serve.attribute_selection import parse_selection, selection_problem
from serve.batcher import Batcher, Overloaded
from serve.crosswalk_tags import add_crosswalk, check_crosswalk
from serve.metrics import Metrics
from serve.settings import Settings
from taxonomy import Snapshot
from taxonomy.crosswalk_catalog import CrosswalkCatalog, MissingTaxonomy
from taxonomy.crosswalk_store import UnknownCrosswalk

if TYPE_CHECKING:
    from serve.api.review.service import ReviewService


def attribute_selection(
    values: Sequence[str] | None, snapshot: Snapshot
) -> AttributeSelection | None:
    """The ``attributes`` query parameter as a selection (None: not given, the default);
    422 ``unknown_attributes`` when none of the names is an attribute of ``snapshot``."""
    if values is None:
        return None
    try:
        selection = parse_selection(values)
    except ValueError as exc:
        raise ApiError(422, "validation_error", f"query.attributes: {exc}", details=[
            ErrorDetail(loc=["query", "attributes"], message=str(exc), type="value_error")
        ]) from exc
    problem = selection_problem(snapshot, selection)
    if problem is not None:
        raise ApiError(422, "unknown_attributes", problem, details=[
            ErrorDetail(loc=["query", "attributes"], message=problem, type="unknown_attributes")
        ])
    return selection


def crosswalk_problem(catalog: CrosswalkCatalog | None, name: str | None, where: list[str | int]) -> None:
    """422 ``unknown_crosswalk`` when ``name`` cannot be used now (None: not asked for)."""
    if name is None:
        return
    try:
        if catalog is None:
            raise UnknownCrosswalk("this service has no crosswalks")
        check_crosswalk(catalog, name)
    except (UnknownCrosswalk, MissingTaxonomy, ValueError) as exc:
        message = f"{exc}: GET /v1/crosswalks lists the crosswalks"
        raise ApiError(422, "unknown_crosswalk", message, details=[
            ErrorDetail(loc=where, message=message, type="unknown_crosswalk")
        ]) from exc


class TagService:
    def __init__(
        self, batcher: Batcher, settings: Settings, metrics: Metrics, snapshot: Callable[[], Snapshot],
        *, review: ReviewService | None = None, crosswalks: CrosswalkCatalog | None = None,
    ) -> None:
        """``snapshot``: the taxonomy version in use now (attribute names are checked against it);
        ``review``: where flagged results go when a request asks for it (``?review=``) or the
        review.enqueue setting says so; ``crosswalks``: where ``?crosswalk=`` names are looked up."""
        self.batcher = batcher
        self.settings = settings
        self.metrics = metrics
        self.snapshot = snapshot
        self.review = review
        self.crosswalks = crosswalks

    async def tag_one(
        self, product: Product, attributes: Sequence[str] | None = None, review: bool | None = None,
        *, crosswalk: str | None = None, fallback: bool = True,
    ) -> TagResponse:
        return (await self._tag([product], attributes, review, "api", crosswalk, fallback, ["query", "crosswalk"]))[0]

    def batch_limit_header(self) -> dict[str, str]:
        """The header telling a client how many products a batch may hold."""
        return {MAX_BATCH_ITEMS_HEADER: str(self.settings.limits.max_batch_items)}

    async def tag_batch(
        self, products: Sequence[Product], attributes: Sequence[str] | None = None, review: bool | None = None,
        *, crosswalk: str | None = None, fallback: bool = True,
    ) -> BatchTagResponse:
        limit = self.settings.limits.max_batch_items
        if len(products) > limit:
            raise ApiError(
                422, "batch_too_large",
                f"a batch holds at most {limit} products, this one has {len(products)}: split it, "
                "or send a job (POST /v1/jobs) for large catalogs",
                headers=self.batch_limit_header(),
            )
        results = await self._tag(products, attributes, review, "batch", crosswalk, fallback, ["crosswalk"])
        return BatchTagResponse(results=results, taxonomy_version=results[0].taxonomy_version)

    async def _tag(
        self, products: Sequence[Product], attributes: Sequence[str] | None, review: bool | None, source: str,
        crosswalk: str | None = None, fallback: bool = True, where: list[str | int] | None = None,
    ) -> list[TagResponse]:
        selection = attribute_selection(attributes, self.snapshot())
        if crosswalk is not None:
            await run_in_threadpool(crosswalk_problem, self.crosswalks, crosswalk, where or ["crosswalk"])
        try:
            results = await self.batcher.tag(products, selection)
        except Overloaded as exc:
            raise ApiError(
                503, "overloaded", f"the tagging queue is full ({exc}); retry shortly",
                headers=retry_after(1),
            ) from exc
        # decided per result, by the tagger, from that product's own LLM calls
        reason = next((r.evidence.llm.degraded_reason for r in results if r.evidence.llm.degraded), None)
        degraded = any(r.evidence.llm.degraded for r in results)
        if degraded and self.settings.server.on_llm_unavailable == "error":
            raise ApiError(
                503, "llm_unavailable",
                f"the LLM backend is unavailable ({reason or 'no answer'}); retry later",
                headers=retry_after(5),
            )
        self.metrics.observe_results(results, source="api")
        if self.review is not None and self.review.wanted(review):
            self.review.enqueue(products, results, source)  # in the background: never waits, never fails
        responses = [TagResponse.model_construct(**dict(r), degraded=r.evidence.llm.degraded) for r in results]
        if crosswalk is not None and self.crosswalks is not None:
            responses = await run_in_threadpool(add_crosswalk, self.crosswalks, crosswalk, responses, fallback=fallback)
        return responses
