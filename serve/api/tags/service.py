"""Tagging: products in, results out, through the batching queue."""

from __future__ import annotations

from collections.abc import Sequence

from agent.contract import Product
from serve.api.errors import ApiError, retry_after
from serve.api.tags.protocol import BatchTagResponse, TagResponse
from serve.batcher import Batcher, Overloaded
from serve.metrics import Metrics
from serve.settings import Settings


class TagService:
    def __init__(self, batcher: Batcher, settings: Settings, metrics: Metrics) -> None:
        self.batcher = batcher
        self.settings = settings
        self.metrics = metrics

    async def tag_one(self, product: Product) -> TagResponse:
        return (await self._tag([product]))[0]

    async def tag_batch(self, products: Sequence[Product]) -> BatchTagResponse:
        limit = self.settings.limits.max_batch_items
        if len(products) > limit:
            raise ApiError(
                422, "batch_too_large",
                f"a batch holds at most {limit} products, this one has {len(products)}: split it, "
                "or send a job (POST /v1/jobs) for large catalogs",
            )
        results = await self._tag(products)
        return BatchTagResponse(results=results, taxonomy_version=results[0].taxonomy_version)

    async def _tag(self, products: Sequence[Product]) -> list[TagResponse]:
        try:
            results = await self.batcher.tag(products)
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
        return [TagResponse.model_construct(**dict(r), degraded=r.evidence.llm.degraded) for r in results]
