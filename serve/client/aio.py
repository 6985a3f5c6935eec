"""The asynchronous client (httpx): the same operations, models, errors and retries as
:class:`serve.client.Client`, awaited; ``tag_many`` keeps ``concurrency`` batches in flight."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import httpx

from agent.contract import Product
from serve.api.feedback.protocol import (
    AttributeValues,
    ExampleOut,
    ExamplePage,
    FeedbackList,
    FeedbackOut,
)
from serve.api.jobs.protocol import TERMINAL, Job, JobList, JobResultLine
from serve.api.ops.protocol import Health
from serve.api.review.protocol import (
    ClaimedItems,
    ItemStatus,
    ReviewHistory,
    ReviewItemOut,
    ReviewPage,
    ReviewStatsOut,
)
from serve.api.tags.protocol import BatchTagResponse, TagResponse
from serve.api.taxonomy.protocol import (
    AttributeOut,
    AttributePage,
    EditResult,
    MigrationMap,
    NodeDetail,
    NodePage,
    SearchResults,
    TaxonomyInfo,
    VersionDetail,
    VersionList,
)
from serve.client import calls
from serve.client.base import ClientBase
from serve.client.batching import spans
from serve.client.calls import Attributes, Call, JobInput
from serve.client.errors import BatchTooLarge, TagsmithError, TransportError, error_from_response
from serve.client.jsonl import alines
from serve.client.retry import Attempts, RetryPolicy
from taxonomy.diff import TaxonomyDiff
from taxonomy.edits import Edit

T = TypeVar("T")
ProductLike = Product | Mapping[str, Any] | str


class AsyncClient(ClientBase):
    """``async with AsyncClient("http://127.0.0.1:8000", api_key) as client: ...``

    ``transport``: an httpx async transport (``httpx.MockTransport`` in tests…); ``retry``:
    the retry policy; ``sleep``: how to wait between retries and polls (``asyncio.sleep``)."""

    def __init__(
        self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, *, timeout: float = 60.0,
        retry: RetryPolicy | None = None, transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(retry)
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=base_url, timeout=timeout, transport=transport, headers=self._headers(api_key, headers),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # ---- sending ---------------------------------------------------------------------------
    async def _response(self, call: Call[Any], *, stream: bool = False) -> httpx.Response:
        attempts = Attempts(self.retry)
        while True:
            request = self._http.build_request(
                call.method, call.path, params=call.params, content=call.content, headers=call.headers,
            )
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = attempts.after_transport_error(exc, idempotent=call.idempotent)
                if delay is None:
                    raise TransportError(f"{call.method} {call.path}: {exc!r}") from exc
                await self._sleep(delay)
                continue
            self._observe(response)
            if response.is_success or response.status_code in call.accept:
                return response
            if stream:
                await response.aread()
                await response.aclose()
            delay = attempts.after_status(response.status_code, response.headers.get("retry-after")) if call.retry else None
            if delay is None:
                raise error_from_response(response)
            await self._sleep(delay)

    async def _send(self, call: Call[T]) -> T:
        return call.parse(await self._response(call))

    async def _lines(
        self, call: Call[Any], model: type[Any], *, resume: Callable[[int], Call[Any]] | None = None,
    ) -> AsyncIterator[Any]:
        """As :meth:`Client._lines`: a JSONL answer line by line, resumed after a broken connection."""
        attempts = Attempts(self.retry)
        read = 0
        while True:
            response = await self._response(call, stream=True)
            try:
                async for line in alines(response.aiter_bytes()):  # on "\n" only: see serve/client/jsonl.py
                    if line.strip():
                        yield model.model_validate_json(line)
                        read += 1
                return
            except httpx.TransportError as exc:
                delay = attempts.after_transport_error(exc, idempotent=resume is not None)
                if delay is None or resume is None:
                    raise TransportError(f"{call.method} {call.path}: {exc!r}") from exc
                await self._sleep(delay)
                call = resume(read)
            finally:
                await response.aclose()

    # ---- tagging ---------------------------------------------------------------------------
    async def tag(
        self, product: ProductLike, *, attributes: Attributes = None, review: bool | None = None,
        crosswalk: str | None = None, crosswalk_fallback: bool | None = None,
    ) -> TagResponse:
        """Tag one product (a :class:`Product`, a mapping of its fields, or a title)."""
        return await self._send(calls.tag(product, attributes=attributes, review=review, crosswalk=crosswalk,
                                    crosswalk_fallback=crosswalk_fallback))

    async def tag_batch(
        self, products: Sequence[ProductLike], *, attributes: Attributes = None, review: bool | None = None,
        crosswalk: str | None = None, crosswalk_fallback: bool | None = None,
    ) -> BatchTagResponse:
        """One ``POST /v1/tags:batch`` (at most the server's limit: :meth:`tag_many` splits)."""
        return await self._send(calls.tag_batch(products, attributes=attributes, review=review, crosswalk=crosswalk,
                                          crosswalk_fallback=crosswalk_fallback))

    async def tag_many(
        self, products: Sequence[ProductLike], *, batch_size: int | None = None, concurrency: int = 4,
        attributes: Attributes = None, review: bool | None = None, crosswalk: str | None = None,
    ) -> list[TagResponse]:
        """Any number of products: batches of the server's limit (``batch_size``: smaller
        ones), ``concurrency`` batches in flight at once; results in input order."""
        items = [calls.as_product(p) for p in products]
        options: dict[str, Any] = {"attributes": attributes, "review": review, "crosswalk": crosswalk}
        parts = spans(len(items), self._batch_size(batch_size))
        if not parts:
            return []

        gate = asyncio.Semaphore(max(1, concurrency))

        async def run(span: tuple[int, int]) -> list[TagResponse]:
            async with gate:
                return await self._tag_span(items[span[0]:span[1]], options)

        tasks = [asyncio.ensure_future(run(span)) for span in parts]
        try:
            done = await asyncio.gather(*tasks)
        except BaseException:  # one batch failed (or the caller was cancelled): stop the others
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return [result for part in done for result in part]

    async def _tag_span(self, items: list[Product], options: dict[str, Any]) -> list[TagResponse]:
        try:
            results = (await self.tag_batch(items, **options)).results
        except BatchTooLarge as exc:
            smaller = self._smaller_batches(exc, len(items))
            return [r for a, b in smaller for r in await self._tag_span(items[a:b], options)]
        if len(results) != len(items):
            raise TagsmithError(f"the server answered {len(results)} results for {len(items)} products")
        return results

    # ---- jobs ------------------------------------------------------------------------------
    async def submit_job(
        self, items: JobInput, *, idempotency_key: str | None = None, attributes: Attributes = None,
        review: bool | None = None, crosswalk: str | None = None,
    ) -> Job:
        """Upload a job (202). The same ``idempotency_key`` with the same input returns the
        job created first; without one, a key is made for this call's own retries."""
        return await self._send(calls.submit_job(items, idempotency_key=idempotency_key, attributes=attributes,
                                           review=review, crosswalk=crosswalk))

    async def jobs(self, *, offset: int = 0, limit: int = 50) -> JobList:
        return await self._send(calls.jobs(offset, limit))

    async def job(self, job_id: str) -> Job:
        return await self._send(calls.job(job_id))

    async def wait_job(
        self, job_id: str, *, poll_s: float = 1.0, timeout_s: float | None = None,
        on_progress: Callable[[Job], object] | None = None,
    ) -> Job:
        """Poll until the job is completed, cancelled or failed; ``on_progress(job)`` after
        each poll (awaited when it returns an awaitable). ``TimeoutError`` after ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = await self.job(job_id)
            if on_progress is not None:
                outcome = on_progress(job)
                if inspect.isawaitable(outcome):
                    await outcome
            if job.state in TERMINAL:
                return job
            if deadline is not None and time.monotonic() + poll_s > deadline:
                raise TimeoutError(f"job {job_id} is still {job.state} after {timeout_s} s")
            await self._sleep(poll_s)

    def job_results(self, job_id: str, *, offset: int = 0) -> AsyncIterator[JobResultLine]:
        """The results written so far, streamed in input order (``offset``: skip lines
        already read); a broken connection resumes where it stopped."""
        return self._lines(calls.job_results(job_id, offset), JobResultLine,
                           resume=lambda read: calls.job_results(job_id, offset + read))

    async def cancel_job(self, job_id: str) -> Job:
        return await self._send(calls.cancel_job(job_id))

    async def delete_job(self, job_id: str) -> None:
        await self._send(calls.delete_job(job_id))

    # ---- taxonomy --------------------------------------------------------------------------
    async def taxonomy(self) -> TaxonomyInfo:
        """The current version (what edits name as ``version``) and its size."""
        return await self._send(calls.taxonomy())

    async def nodes(
        self, parent: str | None = None, *, include_deprecated: bool | None = None, version: int | None = None,
        offset: int = 0, limit: int = 100,
    ) -> NodePage:
        return await self._send(calls.nodes(parent, include_deprecated=include_deprecated, version=version,
                                      offset=offset, limit=limit))

    async def node(self, node_id: str, *, version: int | None = None) -> NodeDetail:
        return await self._send(calls.node(node_id, version=version))

    async def attributes(
        self, category: str | None = None, *, include_deprecated: bool | None = None, version: int | None = None,
        offset: int = 0, limit: int = 100,
    ) -> AttributePage:
        return await self._send(calls.attributes(category, include_deprecated=include_deprecated, version=version,
                                           offset=offset, limit=limit))

    async def attribute(self, attribute_id: str, *, version: int | None = None) -> AttributeOut:
        return await self._send(calls.attribute(attribute_id, version=version))

    async def search_taxonomy(self, q: str, *, limit: int = 20, include_deprecated: bool | None = None) -> SearchResults:
        return await self._send(calls.search_taxonomy(q, limit=limit, include_deprecated=include_deprecated))

    async def versions(self) -> VersionList:
        return await self._send(calls.versions())

    async def version(self, number: int) -> VersionDetail:
        return await self._send(calls.version(number))

    async def diff(self, from_version: int, to_version: int) -> TaxonomyDiff:
        return await self._send(calls.diff(from_version, to_version))

    async def migration_map(self, from_version: int, to_version: int) -> MigrationMap:
        return await self._send(calls.migration_map(from_version, to_version))

    async def edit_taxonomy(
        self, edits: Sequence[Edit | Mapping[str, Any]], *, version: int | Literal["*"], message: str | None = None,
    ) -> EditResult:
        """Apply edits to ``version`` (the If-Match): :class:`StaleVersion` (with
        ``current_version``) when someone edited first; ``"*"``: to whatever is current."""
        return await self._send(calls.edit_taxonomy(edits, version=version, message=message))

    # ---- feedback and examples -------------------------------------------------------------
    async def send_feedback(
        self, product: ProductLike, tags: Sequence[str], *, verdict: Literal["accept", "correct"] = "correct",
        attribute_values: AttributeValues | None = None, note: str | None = None,
    ) -> FeedbackOut:
        """The product's right tags: it becomes an example at once."""
        return await self._send(calls.send_feedback(product, tags, verdict=verdict, attribute_values=attribute_values,
                                              note=note))

    async def feedback_log(self, *, offset: int = 0, limit: int = 50) -> FeedbackList:
        return await self._send(calls.feedback_log(offset, limit))

    async def examples(self, q: str | None = None, *, offset: int = 0, limit: int = 50) -> ExamplePage:
        """Examples in the index (``q``: a substring of their id or text)."""
        return await self._send(calls.examples(q, offset=offset, limit=limit))

    async def example(self, example_id: str) -> ExampleOut:
        return await self._send(calls.example(example_id))

    async def delete_example(self, example_id: str) -> None:
        await self._send(calls.delete_example(example_id))

    # ---- review queue ----------------------------------------------------------------------
    async def review_items(
        self, status: Sequence[ItemStatus] | None = None, *, category: str | None = None,
        reason: str | None = None, offset: int = 0, limit: int = 50,
    ) -> ReviewPage:
        return await self._send(calls.review_items(status, category=category, reason=reason, offset=offset, limit=limit))

    async def review_item(self, item_id: str) -> ReviewItemOut:
        return await self._send(calls.review_item(item_id))

    async def review_history(self, item_id: str) -> ReviewHistory:
        return await self._send(calls.review_history(item_id))

    async def claim_review(self, n: int = 1, *, category: str | None = None, reason: str | None = None) -> ClaimedItems:
        return await self._send(calls.claim_review(n, category=category, reason=reason))

    async def claim_review_item(self, item_id: str) -> ReviewItemOut:
        return await self._send(calls.claim_review_item(item_id))

    async def release_review_item(self, item_id: str) -> ReviewItemOut:
        return await self._send(calls.release_review_item(item_id))

    async def accept_review_item(self, item_id: str, *, note: str | None = None, revision: int | None = None) -> ReviewItemOut:
        return await self._send(calls.accept_review_item(item_id, note=note, revision=revision))

    async def correct_review_item(
        self, item_id: str, category: str, *, attribute_values: AttributeValues | None = None,
        note: str | None = None, revision: int | None = None,
    ) -> ReviewItemOut:
        return await self._send(calls.correct_review_item(item_id, category, attribute_values=attribute_values,
                                                    note=note, revision=revision))

    async def skip_review_item(self, item_id: str, *, note: str | None = None, revision: int | None = None) -> ReviewItemOut:
        return await self._send(calls.skip_review_item(item_id, note=note, revision=revision))

    async def review_stats(self) -> ReviewStatsOut:
        return await self._send(calls.review_stats())

    def review_export(self, status: Sequence[ItemStatus] | None = None) -> AsyncIterator[ReviewItemOut]:
        return self._lines(calls.review_export(status), ReviewItemOut)

    # ---- operations ------------------------------------------------------------------------
    async def ready(self) -> Health:
        """``/readyz``: ``status`` "ok" when ready (no retries, no key needed)."""
        return await self._send(calls.ready())
