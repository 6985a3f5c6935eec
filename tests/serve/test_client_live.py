"""The Python client (and its LangChain tool and retriever) against a real ``tagsmith serve`` on
loopback, started once for the module: every client method, a 429 waited out after its
Retry-After, a 412 as StaleVersion, a job submitted twice with one idempotency key, and an
async tag_many of 500 products in input order. The server: the shop taxonomy with attributes, the hashing
embedder, batches of at most 16 products (so that tag_many learns the limit), 20 requests/s
per key (each test has its own key), every answer flagged for review."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from agent.contract import Product
from serve.api.jobs.protocol import Job, JobResultLine
from serve.client import (
    AsyncClient,
    Client,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    RetryPolicy,
    ReviewItemChanged,
    StaleVersion,
    Unauthorized,
    ValidationFailed,
)
from serve.keys import KeyStore, key_store_path
from tests.conftest import free_port
from tests.serve.helpers import (
    HASHING_ENV,
    REPO,
    copy_data_dir,
    start_server,
    stop_server,
    wait_ready,
)

pytestmark = pytest.mark.process  # one real server process for the module

ALL_SCOPES = ("tags", "feedback", "taxonomy:write")


@dataclass
class Server:
    base: str
    data: Path

    def key(self, *scopes: str) -> str:
        store = KeyStore(key_store_path(self.data))
        try:
            return store.create(frozenset(scopes or ALL_SCOPES), "client-test")[1]
        finally:
            store.close()

    def client(self, *scopes: str, **kwargs: object) -> Client:
        return Client(self.base, self.key(*scopes), timeout=30, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def server(attrs_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = copy_data_dir(attrs_template, tmp_path_factory.mktemp("client-live") / "data")
    env = {
        **HASHING_ENV, "TAGSMITH_DATA_DIR": str(data), "TAGSMITH_TAGGING__PIPELINE": "knn",
        "TAGSMITH_LIMITS__MAX_BATCH_ITEMS": "16", "TAGSMITH_LIMITS__RATE_PER_S": "20",
        "TAGSMITH_LIMITS__RATE_BURST": "40", "TAGSMITH_TAGGING__REVIEW_THRESHOLD": "0.999",
        "TAGSMITH_JOBS__BATCH_SIZE": "8", "TAGSMITH_SERVER__REFRESH_INTERVAL_S": "1",
    }
    live = Server("", data)
    live.key("admin")  # the service refuses to start without a key
    port = free_port()
    proc = start_server(port, env)
    try:
        live.base = f"http://127.0.0.1:{port}"
        wait_ready(proc, live.base, env, timeout=120)
        yield live
    finally:
        stop_server(proc)


class Recording(httpx.HTTPTransport):
    """A real transport that notes the status of every answer."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.statuses.append(response.status_code)
        return response


def test_the_client_imports_without_fastapi_torch_or_the_models() -> None:
    heavy = ["fastapi", "starlette", "uvicorn", "torch", "sentence_transformers", "transformers", "faiss",
             "llama_cpp", "sklearn", "numpy", "langchain_core"]
    code = (f"import sys; import serve.client; from serve.client import Client, AsyncClient; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_tag_one_and_a_batch_and_the_errors(server: Server) -> None:
    with server.client() as client:
        assert client.ready().status == "ok"
        one = client.tag({"id": "s1", "title": "Wool hiking socks, 2 pairs"})
        assert one.id == "s1" and one.tags[0].id == "apparel/socks" and one.taxonomy_version == 1
        assert client.tag("Cast iron skillet 12 inch").tags[0].id == "kitchen/cookware/pans"
        batch = client.tag_batch([Product(id="a", title="French press coffee maker"), {"id": "b", "title": "USB-C charger 30W"}])
        assert [r.id for r in batch.results] == ["a", "b"] and batch.results[1].tags[0].id == "electronics/chargers"
        assert client.max_batch_items == 16  # learnt from the answer's header
        with pytest.raises(ValidationFailed) as bad:
            client.tag("socks", attributes=["no such attribute"])
        assert bad.value.code == "unknown_attributes" and bad.value.request_id
    with Client(server.base, "tsk_" + "x" * 40) as stranger, pytest.raises(Unauthorized):
        stranger.tag("socks")
    with server.client("feedback") as reviewer, pytest.raises(Forbidden):
        reviewer.tag("socks")


def test_async_tag_many_of_500_products_keeps_input_order(server: Server) -> None:
    products = [Product(id=f"p{i:03d}", title=title)
                for i, title in enumerate(["Wool socks", "Frying pan 28 cm", "Jigsaw puzzle 1000"] * 167)][:500]

    async def run() -> tuple[list[str | None], list[str], int]:
        async with AsyncClient(server.base, server.key("tags"), timeout=60) as client:
            results = await client.tag_many(products, concurrency=4)
            return [r.id for r in results], [r.tags[0].id for r in results], client.max_batch_items

    async def job() -> tuple[list[str], list[float]]:
        async with AsyncClient(server.base, server.key("tags"), timeout=60) as client:
            submitted = await client.submit_job(products[:5])
            seen: list[float] = []

            async def note(job: Job) -> None:
                seen.append(job.progress)

            done = await client.wait_job(submitted.id, poll_s=0.2, timeout_s=60, on_progress=note)
            assert done.state == "completed"
            return [line.custom_id async for line in client.job_results(submitted.id)], seen

    custom_ids, progress = asyncio.run(job())
    assert custom_ids == [p.id for p in products[:5]] and progress[-1] == 1.0
    ids, tags, limit = asyncio.run(run())
    assert ids == [p.id for p in products] and limit == 16
    assert tags[:3] == ["apparel/socks", "kitchen/cookware/pans", "toys/puzzles"] and tags[3:6] == tags[:3]
    with server.client("tags") as client:  # the synchronous one, with a batch size of its own
        assert [r.id for r in client.tag_many(products[:40], batch_size=7, concurrency=2)] == [p.id for p in products[:40]]


def _until_limited(call: Callable[[], bool], threads: int = 4, timeout_s: float = 60.0) -> None:
    """``call`` from ``threads`` threads at once, over and over, until one returns True (it
    met a 429). Concurrent: an export costs 10 of the key's 40 tokens and 20 come back a
    second, so calls one after another that take 0.5 s each (a loaded machine) never run
    out; four at a time run out unless each takes 2 s. Bounded: fails after ``timeout_s``."""
    limited = threading.Event()
    deadline = time.monotonic() + timeout_s

    def loop() -> None:
        while not limited.is_set() and time.monotonic() < deadline:
            if call():
                limited.set()

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(loop) for _ in range(threads)]:
            future.result()  # a call's own failure fails the test
    assert limited.is_set(), f"no 429 in {timeout_s:.0f} s of concurrent exports"


def test_a_429_is_retried_after_its_retry_after(server: Server) -> None:
    key = server.key("feedback")
    waits: list[tuple[list[int], float]] = []  # (statuses, seconds) of each call that met a 429
    local = threading.local()

    def export() -> bool:
        if not hasattr(local, "client"):  # one client (and recording transport) per thread
            local.recording = Recording()
            local.client = Client(server.base, key, transport=local.recording, timeout=30)
            clients.append(local.client)
        local.recording.statuses.clear()
        started = time.monotonic()
        assert all(item.id for item in local.client.review_export())  # answered, after its retries
        if 429 not in local.recording.statuses:
            return False
        waits.append((list(local.recording.statuses), time.monotonic() - started))
        return True

    clients: list[Client] = []
    try:
        _until_limited(export)
    finally:
        for client in clients:
            client.close()
    # refused, waited for (Retry-After: 1 each time), then answered
    for statuses, waited in waits:
        assert statuses[-1] == 200 and set(statuses[:-1]) == {429}, statuses
        assert waited >= 0.9 * statuses.count(429), (statuses, waited)

    def impatient() -> bool:
        with Client(server.base, key, retry=RetryPolicy(budget_s=0.5), timeout=30) as client:
            try:
                list(client.review_export())
            except RateLimited as exc:
                assert exc.retry_after is not None and exc.retry_after >= 1
                return True
            return False

    _until_limited(impatient)  # raised at once: a Retry-After beyond the budget is not waited for


def test_taxonomy_read_search_and_edit_with_if_match(server: Server) -> None:
    with server.client() as client:
        info = client.taxonomy()
        assert info.leaf_count == 13
        children = client.nodes(parent="apparel/tops")
        assert {n.id for n in children.items} == {"apparel/tops/tees", "apparel/tops/hoodies"}
        tees = client.node("apparel/tops/tees")  # an id with '/'
        assert tees.ancestors == ["apparel", "apparel/tops"] and tees.path == ["Apparel", "Tops", "T-Shirts"]
        assert client.nodes(include_deprecated=True, limit=1000).total > client.nodes(limit=1000).total
        assert client.search_taxonomy("skillet").hits[0].id == "kitchen/cookware/pans"
        assert {a.id for a in client.attributes().items} == {"color", "material", "brand", "size"}
        assert {a.id for a in client.attributes(category="apparel/socks").items} == {"color", "material", "brand"}
        assert [v.name for v in client.attribute("color").values][:2] == ["Black", "White"]
        with pytest.raises(NotFound):
            client.attribute("weight")
        with pytest.raises(NotFound):
            client.node("no/such/node")
        edit = {"op": "add_node", "id": f"toys/kites-{info.version}", "name": "Kites", "parent": "toys"}
        done = client.edit_taxonomy([edit], version=info.version, message="kites")
        assert done.previous_version == info.version and done.changes["added"] == 1
        again = {**edit, "id": f"toys/yoyos-{info.version}", "name": "Yo-yos"}
        with pytest.raises(StaleVersion) as stale:  # someone edited first
            client.edit_taxonomy([again], version=info.version)
        assert stale.value.current_version == done.version and stale.value.status == 412
        assert client.edit_taxonomy([again], version=stale.value.current_version).version == done.version + 1
        assert client.edit_taxonomy([{**again, "id": "toys/tops", "name": "Spinning tops"}], version="*").version == done.version + 2
        assert [v.version for v in client.versions().items][-3:] == [done.version, done.version + 1, done.version + 2]
        assert client.version(done.version).edits[0].op == "add_node"
        assert client.diff(info.version, done.version).added == [edit["id"]]
        mapping = client.migration_map(1, done.version).mapping
        assert mapping["electronics/pagers"] == "electronics/phones" and edit["id"] not in mapping
        assert client.node(edit["id"], version=done.version).parent == "toys"


def test_a_job_submitted_twice_with_one_key_is_one_job(server: Server) -> None:
    lines = [(f"c{i}", Product(title=t)) for i, t in enumerate(["Wool socks", "Frying pan", "Puzzle 500 pieces"] * 7)]
    key = server.key("tags")
    with Client(server.base, key, timeout=30) as client:
        job = client.submit_job(lines, idempotency_key="catalog-1", attributes="off")
        again = client.submit_job(lines, idempotency_key="catalog-1", attributes="off")
        assert again.id == job.id and job.counts.total == 21
        with pytest.raises(ValidationFailed) as reused:  # the same key, another body
            client.submit_job(lines[:3], idempotency_key="catalog-1", attributes="off")
        assert reused.value.code == "idempotency_key_reused"
        progress: list[float] = []
        finished = client.wait_job(job.id, poll_s=0.2, timeout_s=60, on_progress=lambda j: progress.append(j.progress))
        assert finished.state == "completed" and finished.counts.succeeded == 21 and progress[-1] == 1.0
        results = list(client.job_results(job.id))
        assert [r.custom_id for r in results] == [c for c, _ in lines]
        assert results[0].result is not None and results[0].result.tags[0].id == "apparel/socks"
        assert [r.custom_id for r in client.job_results(job.id, offset=19)] == ["c19", "c20"]
        raw = httpx.get(f"{server.base}{finished.results_url}", headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert set(json.loads(raw.text.splitlines()[0])) == set(JobResultLine.model_fields)  # the line model is the file's
        assert job.id in [j.id for j in client.jobs().items]
        with pytest.raises(Conflict):  # finished: nothing to cancel
            client.cancel_job(job.id)
        client.delete_job(job.id)
        with pytest.raises(NotFound):
            client.job(job.id)


def test_feedback_and_examples(server: Server) -> None:
    with server.client() as client:
        out = client.send_feedback({"id": "sku-kite-1", "title": "Stunt kite with two lines"}, ["toys/puzzles"], note="test")
        assert out.example_id == "sku-kite-1" and out.tags == ["toys/puzzles"]
        assert out.id in [f.id for f in client.feedback_log().items]
        page = client.examples("stunt kite")
        assert [e.id for e in page.items] == ["sku-kite-1"] and client.example("sku-kite-1").tags == ["toys/puzzles"]
        client.delete_example("sku-kite-1")
        with pytest.raises(NotFound):
            client.example("sku-kite-1")


def test_the_review_queue(server: Server) -> None:
    with server.client() as client:
        titles = ["Merino hiking socks", "Fleece hoodie navy", "Wooden blocks 100 pcs", "Stock pot 10 l"]
        for i, title in enumerate(titles):
            assert client.tag({"id": f"rq-{i}", "title": title}, review=True).needs_review
        deadline = time.monotonic() + 60
        while client.review_stats().open < len(titles):  # enqueued in the background
            assert time.monotonic() < deadline, "the flagged results did not reach the queue"
            time.sleep(0.2)
        first, second = client.claim_review(2).items
        with pytest.raises(ReviewItemChanged) as changed:
            client.accept_review_item(first.id, revision=first.revision + 5)
        assert changed.value.item["id"] == first.id
        assert client.accept_review_item(first.id, revision=first.revision).status == "accepted"
        corrected = client.correct_review_item(second.id, "apparel/socks", note="socks")
        assert corrected.status == "corrected" and corrected.decision is not None
        rest = client.review_items(["open"]).items
        assert len(rest) >= 2
        held = client.claim_review_item(rest[0].id)
        assert held.status == "claimed" and client.release_review_item(held.id).status == "open"
        assert client.skip_review_item(rest[1].id).status == "skipped"
        with pytest.raises(Conflict):
            client.claim_review_item(first.id)  # already decided
        events = [e.action for e in client.review_history(first.id).events]
        assert events[0] == "claim" and events[-1] == "accepted"
        assert client.review_item(second.id).decision is not None
        assert {i.id for i in client.review_export(["accepted", "corrected"])} >= {first.id, second.id}


def test_langchain_tool_and_retriever_through_langchain_interfaces(server: Server) -> None:
    from langchain_core.documents import Document
    from langchain_core.runnables import RunnableLambda

    from serve.client.langchain import TaggedExamplesRetriever, TagProductTool

    key = server.key("tags", "feedback")
    with Client(server.base, key, timeout=30) as client:
        tool = TagProductTool(client=client)
        assert tool.get_input_schema().model_json_schema()["properties"].keys() == Product.model_json_schema()["properties"].keys()
        out = tool.invoke({"title": "Wool hiking socks", "id": "lc-1"})
        assert out["id"] == "lc-1" and out["tags"][0]["id"] == "apparel/socks"
        many = tool.batch([{"title": "Frying pan 28 cm"}, {"title": "USB-C charger"}])
        assert [r["tags"][0]["id"] for r in many] == ["kitchen/cookware/pans", "electronics/chargers"]
        chain = tool | RunnableLambda(lambda result: result["tags"][0]["path"])
        assert chain.invoke({"title": "Jigsaw puzzle 1000 pieces"}) == ["Toys", "Puzzles"]

        retriever = TaggedExamplesRetriever(client=client, k=2)
        docs = retriever.invoke("wool hiking socks")
        assert docs and all(isinstance(d, Document) for d in docs)
        assert docs[0].metadata["tags"] == ["apparel/socks"] and "wool hiking socks" in docs[0].page_content.lower()
        assert [len(d) for d in retriever.batch(["skillet", "no such product at all"])] == [1, 0]
        context = retriever | RunnableLambda(lambda found: sorted({t for d in found for t in d.metadata["tags"]}))
        assert context.invoke("puzzle") == ["toys/puzzles"]

    async def run_async() -> tuple[str, int]:
        async with AsyncClient(server.base, key, timeout=30) as aclient:
            tagged = await TagProductTool(async_client=aclient).ainvoke({"title": "Chef knife 20 cm"})
            found = await TaggedExamplesRetriever(async_client=aclient).ainvoke("knife")
            return tagged["tags"][0]["id"], len(found)

    assert asyncio.run(run_async()) == ("kitchen/knives", 3)
