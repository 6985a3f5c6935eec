"""The synchronous client (httpx): every operation of the API, typed with the service's own
protocol models; errors as :mod:`serve.client.errors`, retries as :mod:`serve.client.retry`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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
from serve.client.jsonl import lines
from serve.client.retry import Attempts, RetryPolicy
from taxonomy.diff import TaxonomyDiff
from taxonomy.edits import Edit

T = TypeVar("T")
ProductLike = Product | Mapping[str, Any] | str


class Client(ClientBase):
    """``Client("http://127.0.0.1:8000", api_key)``; a context manager (closes its connections).

    ``transport``: an httpx transport (``httpx.MockTransport`` in tests, a proxy's…);
    ``retry``: the retry policy for 429/503 and refused connections; ``sleep``: how to wait
    between retries and polls (``time.sleep``)."""

    def __init__(
        self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, *, timeout: float = 60.0,
        retry: RetryPolicy | None = None, transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None, sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(retry)
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=base_url, timeout=timeout, transport=transport, headers=self._headers(api_key, headers),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---- sending ---------------------------------------------------------------------------
    def _response(self, call: Call[Any], *, stream: bool = False) -> httpx.Response:
        attempts = Attempts(self.retry)
        while True:
            request = self._http.build_request(
                call.method, call.path, params=call.params, content=call.content, headers=call.headers,
            )
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                delay = attempts.after_transport_error(exc, idempotent=call.idempotent)
                if delay is None:
                    raise TransportError(f"{call.method} {call.path}: {exc!r}") from exc
                self._sleep(delay)
                continue
            self._observe(response)
            if response.is_success or response.status_code in call.accept:
                return response
            if stream:
                response.read()
                response.close()
            delay = attempts.after_status(response.status_code, response.headers.get("retry-after")) if call.retry else None
            if delay is None:
                raise error_from_response(response)
            self._sleep(delay)

    def _send(self, call: Call[T]) -> T:
        return call.parse(self._response(call))

    def _lines(self, call: Call[Any], model: type[Any], *, resume: Callable[[int], Call[Any]] | None = None) -> Iterator[Any]:
        """A JSONL answer, streamed line by line; with ``resume``, a connection that breaks
        mid-stream is picked up where it stopped (``resume(lines read)``), within the retry policy."""
        attempts = Attempts(self.retry)
        read = 0
        while True:
            response = self._response(call, stream=True)
            try:
                for line in lines(response.iter_bytes()):  # on "\n" only: see serve/client/jsonl.py
                    if line.strip():
                        yield model.model_validate_json(line)
                        read += 1
                return
            except httpx.TransportError as exc:
                delay = attempts.after_transport_error(exc, idempotent=resume is not None)
                if delay is None or resume is None:
                    raise TransportError(f"{call.method} {call.path}: {exc!r}") from exc
                self._sleep(delay)
                call = resume(read)
            finally:
                response.close()

    # ---- tagging ---------------------------------------------------------------------------
    def tag(
        self, product: ProductLike, *, attributes: Attributes = None, review: bool | None = None,
        crosswalk: str | None = None, crosswalk_fallback: bool | None = None,
    ) -> TagResponse:
        """Tag one product (a :class:`Product`, a mapping of its fields, or a title)."""
        return self._send(calls.tag(product, attributes=attributes, review=review, crosswalk=crosswalk,
                                    crosswalk_fallback=crosswalk_fallback))

    def tag_batch(
        self, products: Sequence[ProductLike], *, attributes: Attributes = None, review: bool | None = None,
        crosswalk: str | None = None, crosswalk_fallback: bool | None = None,
    ) -> BatchTagResponse:
        """One ``POST /v1/tags:batch`` (at most the server's limit: :meth:`tag_many` splits)."""
        return self._send(calls.tag_batch(products, attributes=attributes, review=review, crosswalk=crosswalk,
                                          crosswalk_fallback=crosswalk_fallback))

    def tag_many(
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

        def run(span: tuple[int, int]) -> list[TagResponse]:
            return self._tag_span(items[span[0]:span[1]], options)

        pool = ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(parts))))
        try:
            return [result for part in pool.map(run, parts) for result in part]
        finally:  # after a failure, batches not started yet are not sent
            pool.shutdown(wait=True, cancel_futures=True)

    def _tag_span(self, items: list[Product], options: dict[str, Any]) -> list[TagResponse]:
        try:
            results = self.tag_batch(items, **options).results
        except BatchTooLarge as exc:
            smaller = self._smaller_batches(exc, len(items))
            return [r for a, b in smaller for r in self._tag_span(items[a:b], options)]
        if len(results) != len(items):
            raise TagsmithError(f"the server answered {len(results)} results for {len(items)} products")
        return results

    # ---- jobs ------------------------------------------------------------------------------
    def submit_job(
        self, items: JobInput, *, idempotency_key: str | None = None, attributes: Attributes = None,
        review: bool | None = None, crosswalk: str | None = None,
    ) -> Job:
        """Upload a job (202). The same ``idempotency_key`` with the same input returns the
        job created first; without one, a key is made for this call's own retries."""
        return self._send(calls.submit_job(items, idempotency_key=idempotency_key, attributes=attributes,
                                           review=review, crosswalk=crosswalk))

    def jobs(self, *, offset: int = 0, limit: int = 50) -> JobList:
        return self._send(calls.jobs(offset, limit))

    def job(self, job_id: str) -> Job:
        return self._send(calls.job(job_id))

    def wait_job(
        self, job_id: str, *, poll_s: float = 1.0, timeout_s: float | None = None,
        on_progress: Callable[[Job], None] | None = None,
    ) -> Job:
        """Poll until the job is completed, cancelled or failed; ``on_progress(job)`` after
        each poll. ``TimeoutError`` after ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job.state in TERMINAL:
                return job
            if deadline is not None and time.monotonic() + poll_s > deadline:
                raise TimeoutError(f"job {job_id} is still {job.state} after {timeout_s} s")
            self._sleep(poll_s)

    def job_results(self, job_id: str, *, offset: int = 0) -> Iterator[JobResultLine]:
        """The results written so far, streamed in input order (``offset``: skip lines
        already read); a broken connection resumes where it stopped."""
        return self._lines(calls.job_results(job_id, offset), JobResultLine,
                           resume=lambda read: calls.job_results(job_id, offset + read))

    def cancel_job(self, job_id: str) -> Job:
        return self._send(calls.cancel_job(job_id))

    def delete_job(self, job_id: str) -> None:
        self._send(calls.delete_job(job_id))

    # ---- taxonomy --------------------------------------------------------------------------
    def taxonomy(self) -> TaxonomyInfo:
        """The current version (what edits name as ``version``) and its size."""
        return self._send(calls.taxonomy())

    def nodes(
        self, parent: str | None = None, *, include_deprecated: bool | None = None, version: int | None = None,
        offset: int = 0, limit: int = 100,
    ) -> NodePage:
        return self._send(calls.nodes(parent, include_deprecated=include_deprecated, version=version,
                                      offset=offset, limit=limit))

    def node(self, node_id: str, *, version: int | None = None) -> NodeDetail:
        return self._send(calls.node(node_id, version=version))

    def attributes(
        self, category: str | None = None, *, include_deprecated: bool | None = None, version: int | None = None,
        offset: int = 0, limit: int = 100,
    ) -> AttributePage:
        return self._send(calls.attributes(category, include_deprecated=include_deprecated, version=version,
                                           offset=offset, limit=limit))

    def attribute(self, attribute_id: str, *, version: int | None = None) -> AttributeOut:
        return self._send(calls.attribute(attribute_id, version=version))

    def search_taxonomy(self, q: str, *, limit: int = 20, include_deprecated: bool | None = None) -> SearchResults:
        return self._send(calls.search_taxonomy(q, limit=limit, include_deprecated=include_deprecated))

    def versions(self) -> VersionList:
        return self._send(calls.versions())

    def version(self, number: int) -> VersionDetail:
        return self._send(calls.version(number))

    def diff(self, from_version: int, to_version: int) -> TaxonomyDiff:
        return self._send(calls.diff(from_version, to_version))

    def migration_map(self, from_version: int, to_version: int) -> MigrationMap:
        return self._send(calls.migration_map(from_version, to_version))

    def edit_taxonomy(
        self, edits: Sequence[Edit | Mapping[str, Any]], *, version: int | Literal["*"], message: str | None = None,
    ) -> EditResult:
        """Apply edits to ``version`` (the If-Match): :class:`StaleVersion` (with
        ``current_version``) when someone edited first; ``"*"``: to whatever is current."""
        return self._send(calls.edit_taxonomy(edits, version=version, message=message))

    # ---- feedback and examples -------------------------------------------------------------
    def send_feedback(
        self, product: ProductLike, tags: Sequence[str], *, verdict: Literal["accept", "correct"] = "correct",
        attribute_values: AttributeValues | None = None, note: str | None = None,
    ) -> FeedbackOut:
        """The product's right tags: it becomes an example at once."""
        return self._send(calls.send_feedback(product, tags, verdict=verdict, attribute_values=attribute_values,
                                              note=note))

    def feedback_log(self, *, offset: int = 0, limit: int = 50) -> FeedbackList:
        return self._send(calls.feedback_log(offset, limit))

    def examples(self, q: str | None = None, *, offset: int = 0, limit: int = 50) -> ExamplePage:
        """Examples in the index (``q``: a substring of their id or text)."""
        return self._send(calls.examples(q, offset=offset, limit=limit))

    def example(self, example_id: str) -> ExampleOut:
        return self._send(calls.example(example_id))

    def delete_example(self, example_id: str) -> None:
        self._send(calls.delete_example(example_id))

    # ---- review queue ----------------------------------------------------------------------
    def review_items(
        self, status: Sequence[ItemStatus] | None = None, *, category: str | None = None,
        reason: str | None = None, offset: int = 0, limit: int = 50,
    ) -> ReviewPage:
        return self._send(calls.review_items(status, category=category, reason=reason, offset=offset, limit=limit))

    def review_item(self, item_id: str) -> ReviewItemOut:
        return self._send(calls.review_item(item_id))

    def review_history(self, item_id: str) -> ReviewHistory:
        return self._send(calls.review_history(item_id))

    def claim_review(self, n: int = 1, *, category: str | None = None, reason: str | None = None) -> ClaimedItems:
        return self._send(calls.claim_review(n, category=category, reason=reason))

    def claim_review_item(self, item_id: str) -> ReviewItemOut:
        return self._send(calls.claim_review_item(item_id))

    def release_review_item(self, item_id: str) -> ReviewItemOut:
        return self._send(calls.release_review_item(item_id))

    def accept_review_item(self, item_id: str, *, note: str | None = None, revision: int | None = None) -> ReviewItemOut:
        return self._send(calls.accept_review_item(item_id, note=note, revision=revision))

    def correct_review_item(
        self, item_id: str, category: str, *, attribute_values: AttributeValues | None = None,
        note: str | None = None, revision: int | None = None,
    ) -> ReviewItemOut:
        return self._send(calls.correct_review_item(item_id, category, attribute_values=attribute_values,
                                                    note=note, revision=revision))

    def skip_review_item(self, item_id: str, *, note: str | None = None, revision: int | None = None) -> ReviewItemOut:
        return self._send(calls.skip_review_item(item_id, note=note, revision=revision))

    def review_stats(self) -> ReviewStatsOut:
        return self._send(calls.review_stats())

    def review_export(self, status: Sequence[ItemStatus] | None = None) -> Iterator[ReviewItemOut]:
        return self._lines(calls.review_export(status), ReviewItemOut)

    # ---- operations ------------------------------------------------------------------------
    def ready(self) -> Health:
        """``/readyz``: ``status`` "ok" when ready (no retries, no key needed)."""
        return self._send(calls.ready())
