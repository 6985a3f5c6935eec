"""The Python client's own logic against ``httpx.MockTransport`` (no server): retries within
their budget, error mapping, batching in input order, job bodies and resumed result streams."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from agent.contract import Product
from serve.client import (
    AsyncClient,
    BatchTooLarge,
    Client,
    NotFound,
    RateLimited,
    RetryPolicy,
    ReviewItemChanged,
    ServerError,
    StaleVersion,
    TransportError,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from serve.client.batching import spans
from serve.client.retry import parse_retry_after


def error(status: int, code: str, headers: dict[str, str] | None = None, **extra: Any) -> httpx.Response:
    body = {"error": {"status": status, "code": code, "message": f"{code}!", "request_id": "r1", "details": [], **extra}}
    return httpx.Response(status, json=body, headers=headers)


def tag_result(product: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": product.get("id"), "tags": [{"id": "t/" + product["title"], "name": product["title"], "path": [product["title"]],
                                           "confidence": 0.9}],
        "needs_review": False, "taxonomy_version": 1, "pipeline": "knn",
        "evidence": {"neighbors": [], "llm": {"attempts": 0, "fallback_used": False}},
        "timings_ms": {"retrieval": 1.0, "llm": 0.0, "validation": 0.1, "total": 1.1},
    }


class Recorder:
    """A mock server: answers from a handler, records what it was sent."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
        response: httpx.Response = self.handler(request)
        return response


def client(handler: Any, **kwargs: Any) -> tuple[Client, Recorder, list[float]]:
    waits: list[float] = []
    recorder = Recorder(handler)
    made = Client("http://tagsmith.test", "tsk_test", transport=httpx.MockTransport(recorder), sleep=waits.append, **kwargs)
    return made, recorder, waits


# ---- retries -------------------------------------------------------------------------------
def test_429_and_503_are_retried_after_retry_after() -> None:
    answers = iter([error(429, "rate_limited", {"Retry-After": "2"}), error(503, "overloaded", {"Retry-After": "1"}),
                    httpx.Response(200, json={"version": 3, "name": "t", "source_version": None, "node_count": 1,
                                              "active_count": 1, "leaf_count": 1, "roots": ["a"]})])
    c, rec, waits = client(lambda _: next(answers))
    assert c.taxonomy().version == 3
    assert waits == [2.0, 1.0] and len(rec.requests) == 3
    assert rec.requests[0].headers["authorization"] == "Bearer tsk_test"


def test_a_retry_after_beyond_the_budget_is_not_waited_for() -> None:
    c, rec, waits = client(lambda _: error(429, "rate_limited", {"Retry-After": "120"}), retry=RetryPolicy(budget_s=30))
    with pytest.raises(RateLimited) as caught:
        c.taxonomy()
    assert caught.value.retry_after == 120 and caught.value.code == "rate_limited"
    assert waits == [] and len(rec.requests) == 1


def test_retries_stop_at_max_retries_and_within_the_total_budget() -> None:
    c, rec, waits = client(lambda _: error(503, "not_ready", {"Retry-After": "4"}), retry=RetryPolicy(max_retries=3))
    with pytest.raises(Unavailable):
        c.taxonomy()
    assert waits == [4.0, 4.0, 4.0] and len(rec.requests) == 4
    c, rec, waits = client(lambda _: error(503, "not_ready", {"Retry-After": "4"}), retry=RetryPolicy(budget_s=10))
    with pytest.raises(Unavailable):
        c.taxonomy()
    assert waits == [4.0, 4.0]  # a third wait would pass 10 s in all


def test_other_errors_are_not_retried() -> None:
    c, rec, waits = client(lambda _: error(422, "validation_error"))
    with pytest.raises(ValidationFailed):
        c.tag("socks")
    assert len(rec.requests) == 1 and waits == []


def test_refused_connections_back_off_and_broken_ones_are_retried_only_when_safe() -> None:
    calls = {"n": 0}

    def refuse_twice(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(201, json={"version": 2, "previous_version": 1, "changes": {"added": 1}})

    c, _, waits = client(refuse_twice)
    assert c.edit_taxonomy([{"op": "add_node", "id": "x", "name": "X", "parent": None}], version=1).version == 2
    assert waits == [0.5, 1.0]  # doubling back-off without a Retry-After

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("reset", request=request)

    c, rec, _ = client(broken)
    with pytest.raises(TransportError):  # an edit may have been applied: not sent again
        c.edit_taxonomy([{"op": "add_node", "id": "x", "name": "X", "parent": None}], version=1)
    assert len(rec.requests) == 1
    c, rec, _ = client(broken, retry=RetryPolicy(max_retries=2))
    with pytest.raises(TransportError):  # a read is sent again
        c.taxonomy()
    assert len(rec.requests) == 3


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now.timestamp()) == 30.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert RetryPolicy().delay(1, None, 0.0) == 0.5 and RetryPolicy().delay(6, 1.0, 0.0) is None


# ---- errors --------------------------------------------------------------------------------
def test_errors_map_to_typed_exceptions() -> None:
    c, _, _ = client(lambda _: error(401, "unauthorized"))
    with pytest.raises(Unauthorized) as caught:
        c.taxonomy()
    assert (caught.value.status, caught.value.message, caught.value.request_id) == (401, "unauthorized!", "r1")
    c, _, _ = client(lambda _: error(404, "not_found"))
    with pytest.raises(NotFound):
        c.node("a/b")
    c, _, _ = client(lambda _: error(412, "precondition_failed", {"ETag": '"7"'}))
    with pytest.raises(StaleVersion) as stale:
        c.edit_taxonomy([{"op": "add_node", "id": "x", "name": "X", "parent": None}], version=3)
    assert stale.value.current_version == 7
    item = {"id": "rv_1", "revision": 4}
    c, _, _ = client(lambda _: error(409, "changed", current=item))
    with pytest.raises(ReviewItemChanged) as changed:
        c.accept_review_item("rv_1", revision=3)
    assert changed.value.item == item
    c, _, _ = client(lambda _: httpx.Response(502, text="<html>bad gateway</html>"))
    with pytest.raises(ServerError) as bad:
        c.taxonomy()
    assert bad.value.code == "http_error" and "bad gateway" in bad.value.message


def test_paths_keep_ids_whole_and_queries_repeat() -> None:
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return error(404, "not_found")

    c, _, _ = client(handler)
    for call in (lambda: c.node("gid://shop/Cat/a b?c#d", version=2), lambda: c.example("sku/1"),
                 lambda: c.tag("socks", attributes=["Color", "Size"], review=True)):
        with pytest.raises(NotFound):
            call()
    assert seen[0].raw_path == b"/v1/taxonomy/nodes/gid%3A%2F%2Fshop%2FCat%2Fa%20b%3Fc%23d?version=2"
    assert seen[1].raw_path == b"/v1/examples/sku%2F1"
    assert seen[2].params.get_list("attributes") == ["Color", "Size"] and seen[2].params["review"] == "true"


# ---- batching ------------------------------------------------------------------------------
def batch_server(limit: int, sizes: list[int]) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        products = json.loads(request.content)["products"]
        sizes.append(len(products))
        headers = {"X-Max-Batch-Items": str(limit)}
        if len(products) > limit:
            return error(422, "batch_too_large", headers)
        return httpx.Response(200, headers=headers, json={"results": [tag_result(p) for p in products], "taxonomy_version": 1})

    return handler


def test_spans_cover_in_order() -> None:
    assert spans(5, 2) == [(0, 2), (2, 4), (4, 5)] and spans(0, 3) == []
    with pytest.raises(ValueError):
        spans(3, 0)


def test_tag_many_splits_by_the_limit_the_server_gives_and_keeps_order() -> None:
    sizes: list[int] = []
    c, _, _ = client(batch_server(5, sizes))
    products = [{"id": f"p{i}", "title": f"product {i}"} for i in range(23)]
    results = c.tag_many(products, concurrency=3)
    assert [r.id for r in results] == [f"p{i}" for i in range(23)]
    assert sizes[0] == 23  # 64 by default: refused, split by the limit in the 422
    assert sorted(sizes[1:]) == [3, 5, 5, 5, 5] and c.max_batch_items == 5
    sizes.clear()
    assert [r.id for r in c.tag_many(products[:12])] == [f"p{i}" for i in range(12)]
    assert sorted(sizes) == [2, 5, 5]  # learnt: no refusal any more
    with pytest.raises(BatchTooLarge):  # a limit that does not make batches smaller: raised
        client(lambda _: error(422, "batch_too_large"))[0].tag_many(products)


def test_async_tag_many_keeps_order_and_bounds_concurrency() -> None:
    sizes: list[int] = []
    inner = batch_server(4, sizes)
    state = {"now": 0, "max": 0}

    async def handler(request: httpx.Request) -> httpx.Response:
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        await asyncio.sleep(0.002)
        state["now"] -= 1
        response: httpx.Response = inner(request)
        return response

    async def run() -> list[str | None]:
        async with AsyncClient("http://tagsmith.test", "k", transport=httpx.MockTransport(handler)) as ac:
            ac.max_batch_items = 4
            results = await ac.tag_many([f"item {i}" for i in range(50)], concurrency=3)
            return [r.tags[0].name for r in results]

    assert asyncio.run(run()) == [f"item {i}" for i in range(50)]
    assert state["max"] == 3 and sorted(sizes) == [2] + [4] * 12


# ---- jobs ----------------------------------------------------------------------------------
JOB = {"id": "j1", "state": "queued", "created_at": "2026-01-01T00:00:00Z", "started_at": None, "finished_at": None,
       "counts": {"total": 2, "succeeded": 0, "failed": 0}, "progress": 0.0, "message": None,
       "results_url": "/v1/jobs/j1/results"}


def test_submit_sends_jsonl_with_one_idempotency_key_across_retries() -> None:
    answers = iter([error(503, "uploads_busy", {"Retry-After": "5"}), httpx.Response(202, json=JOB)])
    c, rec, waits = client(lambda _: next(answers))
    job = c.submit_job([Product(id="a", title="socks"), ("b", {"title": "pan"})], attributes="off")
    assert job.id == "j1" and waits == [5.0]
    first, second = rec.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"].strip() != ""
    assert first.headers["content-type"] == "application/jsonl" and first.url.params["attributes"] == "off"
    lines = [json.loads(line) for line in first.content.decode().splitlines()]
    assert lines == [{"custom_id": "a", "product": {"id": "a", "title": "socks"}},
                     {"custom_id": "b", "product": {"title": "pan"}}]
    c, rec, _ = client(lambda _: httpx.Response(202, json=JOB))
    c.submit_job([{"custom_id": "x", "product": {"title": "t"}}], idempotency_key="catalog-1")
    assert rec.requests[0].headers["idempotency-key"] == "catalog-1"


def test_wait_polls_with_progress_until_a_final_state() -> None:
    states = iter([("queued", 0.0), ("running", 0.5), ("completed", 1.0)])

    def handler(_: httpx.Request) -> httpx.Response:
        state, progress = next(states)
        return httpx.Response(200, json={**JOB, "state": state, "progress": progress})

    c, _, waits = client(handler)
    seen: list[float] = []
    job = c.wait_job("j1", poll_s=0.25, on_progress=lambda j: seen.append(j.progress))
    assert job.state == "completed" and seen == [0.0, 0.5, 1.0] and waits == [0.25, 0.25]


class BreakingStream(httpx.SyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        raise httpx.ReadError("connection reset")


def result_line(i: int) -> bytes:
    return json.dumps({"custom_id": str(i), "result": None, "degraded": False,
                       "error": {"code": "tagging_failed", "message": "x"}}).encode() + b"\n"


def test_results_stream_resumes_after_a_broken_connection() -> None:
    offsets: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params.get("offset", "0"))
        offsets.append(str(offset))
        if offset == 0:  # two lines, then the connection breaks
            return httpx.Response(200, stream=BreakingStream([result_line(0) + result_line(1)]))
        return httpx.Response(200, content=b"".join(result_line(i) for i in range(offset, 5)))

    c, _, waits = client(handler)
    assert [r.custom_id for r in c.job_results("j1")] == ["0", "1", "2", "3", "4"]
    assert offsets == ["0", "2"] and waits == [0.5]


def test_ready_reads_health_whether_ready_or_not_and_raises_other_503s() -> None:
    c, rec, _ = client(lambda _: httpx.Response(503, json={"status": "starting", "checks": {"engine": "loading"}}))
    assert c.ready().status == "starting" and len(rec.requests) == 1
    c, rec, _ = client(lambda _: error(503, "unavailable", {"Retry-After": "1"}))
    with pytest.raises(Unavailable):
        c.ready()
    assert len(rec.requests) == 1  # a probe is not retried


def test_a_failed_batch_stops_the_batches_not_sent_yet() -> None:
    sizes: list[int] = []
    inner = batch_server(2, sizes)

    def handler(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["products"][0]["title"] == "bad":
            return error(422, "validation_error")
        response: httpx.Response = inner(request)
        return response

    c, rec, _ = client(handler)
    c.max_batch_items = 2
    with pytest.raises(ValidationFailed):
        c.tag_many(["bad", "x"] + ["fine"] * 40, concurrency=1)
    assert len(rec.requests) <= 2  # of 21 batches (the worker may have taken the next one already)


def test_results_split_on_newlines_only_not_on_unicode_line_separators() -> None:
    # JSON leaves U+2028/U+2029/U+0085 raw in strings; httpx's iter_lines() splits on them.
    # The lines also arrive in chunks cut mid-line and mid-character.
    odd = ["a\u2028b", "c\u2029d", "e\x85f", "plain"]
    body = b"".join(json.dumps({"custom_id": cid, "result": None, "degraded": False,
                                "error": {"code": "tagging_failed", "message": cid}}, ensure_ascii=False).encode() + b"\n"
                    for cid in odd)
    chunks = [body[i:i + 7] for i in range(0, len(body), 7)]

    class Chunked(httpx.SyncByteStream, httpx.AsyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield from chunks

        async def __aiter__(self) -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

    c, _, _ = client(lambda _: httpx.Response(200, stream=Chunked()))
    assert [r.custom_id for r in c.job_results("j1")] == odd

    async def read_async() -> list[str]:
        transport = httpx.MockTransport(lambda _: httpx.Response(200, stream=Chunked()))
        async with AsyncClient("http://tagsmith.test", "k", transport=transport) as ac:
            return [r.custom_id async for r in ac.job_results("j1")]

    assert asyncio.run(read_async()) == odd
