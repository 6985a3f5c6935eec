"""Rate limits (429 + Retry-After) and an unavailable LLM backend (503, or a flagged answer)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from agent.llm import ChatMessage, Generation, LLMUnavailableError
from agent.llm.fake import FaultInjectingBackend, FixedLatencyBackend
from serve.api.limits import PINNED_VERSION_COST, RateLimiter, request_cost
from taxonomy import Snapshot, TaxonomyStore
from tests.serve.helpers import assert_error, auth, make_keys, running_app, service_settings


def test_rate_limit_is_per_key_with_retry_after(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    # one token every 4 s: the first three requests cannot earn a fourth, however slow the machine
    settings = service_settings(shop_dir, limits={"rate_per_s": 0.25, "rate_burst": 3})
    with running_app(settings) as client:
        tags, other = auth(keys["tags"]), auth(keys["tags+feedback"])
        statuses = [client.get("/v1/jobs", headers=tags).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        limited = client.get("/v1/jobs", headers=tags)
        error = assert_error(limited, 429, "rate_limited")
        retry_after = int(limited.headers["retry-after"])
        assert 1 <= retry_after <= 4 and "0.25 requests/s" in error["message"]
        # other keys and the open endpoints are not affected
        assert client.get("/v1/jobs", headers=other).status_code == 200
        assert client.get("/healthz").status_code == 200
        time.sleep(retry_after)
        assert client.get("/v1/jobs", headers=tags).status_code == 200
        assert "tagsmith_rate_limited_total 1.0" in client.get("/metrics").text


def down_backend() -> FaultInjectingBackend:
    """Every call fails like an unreachable server."""
    return FaultInjectingBackend(FixedLatencyBackend(0.0), fault_rate=1.0, kinds=("timeout",))


def test_llm_down_is_503_for_tagging_by_default(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    settings = service_settings(shop_dir, tagging={"pipeline": "rag"})
    with running_app(settings, llm=down_backend()) as client:
        r = client.post("/v1/tags", json={"title": "Cast iron skillet"}, headers=auth(keys["tags"]))
        error = assert_error(r, 503, "llm_unavailable")
        assert "injected fault" in error["message"] and int(r.headers["retry-after"]) >= 1
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "injected fault" in ready.json()["checks"]["llm"]
        assert client.get("/healthz").status_code == 200  # alive: the LLM is not part of the process


def test_llm_down_gives_a_flagged_retrieval_answer_when_configured(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    settings = service_settings(shop_dir, tagging={"pipeline": "rag"}, server={"on_llm_unavailable": "degrade"})
    with running_app(settings, llm=down_backend()) as client:
        r = client.post("/v1/tags:batch", json={"products": [{"title": "Cast iron skillet"}, {"title": "wool socks"}]},
                        headers=auth(keys["tags"]))
        assert r.status_code == 200, r.text
        for result, leaf in zip(r.json()["results"], ["kitchen/cookware/pans", "apparel/socks"], strict=True):
            assert result["degraded"] is True and result["needs_review"] is True
            assert result["evidence"]["llm"]["fallback_used"] is True
            assert result["tags"][0]["id"] == leaf  # the retrieval answer
        assert "tagsmith_degraded_results_total 2.0" in client.get("/metrics").text


def test_a_working_llm_is_not_degraded(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    llm = FixedLatencyBackend(0.0)
    with running_app(service_settings(shop_dir, tagging={"pipeline": "rag"}), llm=llm) as client:
        r = client.post("/v1/tags", json={"title": "Cast iron skillet"}, headers=auth(keys["tags"]))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["degraded"] is False and body["evidence"]["llm"]["attempts"] == 1
        assert body["pipeline"] == "rag" and llm.calls >= 1
        assert client.get("/readyz").json()["checks"]["llm"] == "ok"


class _DownForSome(FixedLatencyBackend):
    """Down (connection refused) for products whose text says "outage"; slow enough for the
    others that two batches are tagged at the same time."""

    def generate(self, messages: Sequence[ChatMessage], schema: Mapping[str, Any], **kw: Any) -> Generation:
        if "outage" in messages[-1].content:
            time.sleep(0.2)
            raise LLMUnavailableError("injected: connection refused")
        return super().generate(messages, schema, **kw)


@pytest.mark.parametrize("on_llm_unavailable", ["degrade", "error"])
def test_concurrent_batches_each_get_their_own_degraded_flags(shop_dir: Path, on_llm_unavailable: str) -> None:
    """Two batches at once on two engine workers, one hitting the dead backend and one the
    live one: the flag is each result's own, not a share of counters both batches move."""
    keys = make_keys(shop_dir)
    settings = service_settings(
        shop_dir, tagging={"pipeline": "rag"},
        server={"on_llm_unavailable": on_llm_unavailable, "engine_workers": 2},
    )
    with running_app(settings, llm=_DownForSome(0.3)) as client:
        t = auth(keys["tags"])
        dead = {"products": [{"title": "outage: cast iron skillet"}, {"title": "outage: wool socks"}]}
        live = {"products": [{"title": "Cast iron skillet"}, {"title": "Wool hiking socks"}]}
        with ThreadPoolExecutor(2) as pool:
            dead_f = pool.submit(client.post, "/v1/tags:batch", json=dead, headers=t)
            live_f = pool.submit(client.post, "/v1/tags:batch", json=live, headers=t)
            dead_r, live_r = dead_f.result(), live_f.result()
        assert live_r.status_code == 200, live_r.text
        for result in live_r.json()["results"]:
            llm = result["evidence"]["llm"]
            assert result["degraded"] is False and llm["degraded"] is False and llm["degraded_reason"] is None
            assert llm["attempts"] == 1 and llm["fallback_used"] is False
        if on_llm_unavailable == "error":
            error = assert_error(dead_r, 503, "llm_unavailable")
            assert "connection refused" in error["message"]
            return
        assert dead_r.status_code == 200, dead_r.text
        for result in dead_r.json()["results"]:
            llm = result["evidence"]["llm"]
            assert result["degraded"] is True and llm["degraded"] is True and result["needs_review"] is True
            assert llm["degraded_reason"] == "injected: connection refused" and llm["fallback_used"] is True
        assert "tagsmith_degraded_results_total 2.0" in client.get("/metrics").text


# ---- request cost: expensive reads take several tokens; history rebuilds are bounded ----
def test_request_cost_table() -> None:
    def cost(method: str, path: str, query: bytes = b"") -> float:
        return request_cost({"type": "http", "method": method, "path": path, "query_string": query})

    assert cost("GET", "/v1/taxonomy/search", b"q=tee") == 2.0
    assert cost("HEAD", "/v1/taxonomy/search", b"q=tee") == 2.0
    assert cost("GET", "/v1/taxonomy/versions") == cost("GET", "/v1/taxonomy/versions/3") == 2.0
    assert cost("GET", "/v1/taxonomy/diff", b"from=1&to=2") == 10.0
    assert cost("GET", "/v1/taxonomy/migration-map", b"from=1&to=2") == 10.0
    assert cost("GET", "/v1/taxonomy/nodes", b"version=1") == PINNED_VERSION_COST
    assert cost("GET", "/v1/taxonomy/nodes/apparel/socks", b"version=") == PINNED_VERSION_COST
    assert cost("GET", "/v1/taxonomy/attributes/gid://shopify/TaxonomyAttribute/1", b"version=2") == PINNED_VERSION_COST
    assert cost("GET", "/v1/taxonomy/attributes", b"category=x") == 1.0
    for method, path in [("GET", "/v1/taxonomy/nodes"), ("GET", "/v1/taxonomy/nodes/apparel"),
                         ("GET", "/v1/taxonomy"), ("POST", "/v1/tags"), ("POST", "/v1/taxonomy/edits"),
                         ("GET", "/v1/taxonomy/searching")]:
        assert cost(method, path) == 1.0, path


def test_a_cost_above_the_burst_is_capped_so_it_can_still_pass() -> None:
    limiter = RateLimiter(rate=1000.0, burst=3, clock=lambda: 100.0)  # no time passes
    assert limiter.acquire("k", 10.0) == 0.0  # takes the whole burst, not more
    assert limiter.acquire("k", 10.0) == pytest.approx(3 / 1000)  # refilling 3, not 10
    assert "counts as 3" in limiter.describe(10.0) and "counts" not in limiter.describe()


def test_a_search_heavy_key_is_limited_sooner_than_a_cheap_one(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    # one token every 10 s: nothing refills while the test runs, however slow the machine
    settings = service_settings(shop_dir, limits={"rate_per_s": 0.1, "rate_burst": 10})
    with running_app(settings) as client:
        cheap, searcher, historian = auth(keys["tags"]), auth(keys["tags+feedback"]), auth(keys["feedback"])

        def served(path: str, headers: dict[str, str]) -> int:
            """Requests answered before the first 429 (bounded)."""
            for n in range(20):
                r = client.get(path, headers=headers)
                if r.status_code == 429:
                    return n
                assert r.status_code == 200, r.text
            return 20

        assert served("/v1/taxonomy", cheap) == 10
        assert served("/v1/taxonomy/search?q=tee", searcher) == 5
        assert served("/v1/taxonomy/migration-map?from=1&to=1", historian) == 1
        limited = client.get("/v1/taxonomy/search?q=tee", headers=searcher)
        error = assert_error(limited, 429, "rate_limited")
        assert "0.1 requests/s, burst 10; this request counts as 2" in error["message"]
        assert int(limited.headers["retry-after"]) > 10  # two tokens at one per 10 s (less what refilled meanwhile)
        cheap_limited = client.get("/v1/taxonomy", headers=cheap)
        assert "counts as" not in assert_error(cheap_limited, 429, "rate_limited")["message"]
        assert int(cheap_limited.headers["retry-after"]) <= 10
        paths = client.get("/openapi.json").json()["paths"]  # the costs are documented
        assert "Counts as 2 requests" in paths["/v1/taxonomy/search"]["get"]["description"]
        assert "Counts as 10 requests" in paths["/v1/taxonomy/diff"]["get"]["description"]


def test_old_version_rebuilds_are_bounded_across_keys(shop_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = make_keys(shop_dir)
    settings = service_settings(shop_dir, limits={"history_reads_at_once": 1, "history_wait_s": 0.2})
    with TaxonomyStore(settings.taxonomy_db_url) as store:  # versions 2 and 3 on top of the seed
        for v in (1, 2):
            store.apply([{"op": "rename", "id": "toys", "name": f"Toys {v}"}], expected_version=v)
    building: list[int] = []
    release = threading.Event()
    original = TaxonomyStore._build

    def slow_build(self: TaxonomyStore, conn: Any, version: int, base: Snapshot | None) -> Snapshot:
        if version < 3:  # old versions only (start-up loads the current one)
            building.append(version)
            release.wait(10)
        return original(self, conn, version, base)

    monkeypatch.setattr(TaxonomyStore, "_build", slow_build)
    with running_app(settings) as client, ThreadPoolExecutor(1) as pool:
        a, b = auth(keys["tags"]), auth(keys["tags+feedback"])
        stuck = pool.submit(client.get, "/v1/taxonomy/nodes?version=1", headers=a)
        for _ in range(1000):  # bounded: until that read is inside its rebuild
            if building:
                break
            time.sleep(0.01)
        assert building == [1]
        # another key's old-version reads wait briefly, then 503 with Retry-After
        for path in ("/v1/taxonomy/diff?from=2&to=3", "/v1/taxonomy/nodes/toys?version=2",
                     "/v1/taxonomy/migration-map?from=2&to=3"):
            busy = client.get(path, headers=b)
            error = assert_error(busy, 503, "overloaded")
            assert "history_reads_at_once" in error["message"] and busy.headers["retry-after"] == "1"
        # reads of the current version are not held up
        assert client.get("/v1/taxonomy/search?q=toys", headers=b).status_code == 200
        assert client.get("/v1/taxonomy/nodes?version=3", headers=b).status_code == 200
        release.set()
        assert stuck.result(timeout=30).status_code == 200
        assert building == [1]
        diff = client.get("/v1/taxonomy/diff?from=1&to=3", headers=b)  # v1 is cached now
        assert diff.status_code == 200 and diff.json()["renamed"][0]["new_name"] == "Toys 2"
        assert building == [1]
        # and a cached result skips the bound: hold the slot with another rebuild, then ask again
        release.clear()
        stuck = pool.submit(client.get, "/v1/taxonomy/nodes?version=2", headers=a)
        for _ in range(1000):
            if building[-1] == 2:
                break
            time.sleep(0.01)
        assert building == [1, 2]
        assert client.get("/v1/taxonomy/diff?from=1&to=3", headers=b).json() == diff.json()
        assert client.get("/v1/taxonomy/nodes?version=1", headers=b).status_code == 200
        release.set()
        assert stuck.result(timeout=30).status_code == 200


def test_charge_puts_a_bucket_into_bounded_debt() -> None:
    limiter = RateLimiter(rate=10.0, burst=5, clock=lambda: 100.0)  # no time passes
    limiter.charge("k", 25.0)  # 5 saved, 20 owed: two seconds of refill before one token
    assert limiter.acquire("k") == pytest.approx(2.1)
    assert limiter.acquire("other") == 0.0
    limiter.charge("k", 1e9)  # debt is capped at one minute of refill
    assert 60.0 <= limiter.acquire("k") <= 60.2


def test_the_cpu_of_old_version_rebuilds_is_charged_to_a_per_key_budget(
    shop_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = make_keys(shop_dir)
    # 0.2 s of CPU per rebuild against a 0.3 s budget refilling at 1% of a core: the second
    # rebuild puts the key 0.1 s in debt, 10 s of refill
    settings = service_settings(shop_dir, limits={"history_cpu_share": 0.01, "history_cpu_burst_s": 0.3})
    with TaxonomyStore(settings.taxonomy_db_url) as store:
        for v in (1, 2):
            store.apply([{"op": "rename", "id": "toys", "name": f"Toys {v}"}], expected_version=v)
    original = TaxonomyStore._build

    def cpu_heavy_build(self: TaxonomyStore, conn: Any, version: int, base: Snapshot | None) -> Snapshot:
        if version < 3:  # old versions only (start-up loads the current one)
            start = time.thread_time()
            while time.thread_time() - start < 0.2:
                pass
        return original(self, conn, version, base)

    monkeypatch.setattr(TaxonomyStore, "_build", cpu_heavy_build)
    with running_app(settings) as client:
        historian, other = auth(keys["tags"]), auth(keys["feedback"])
        assert client.get("/v1/taxonomy/nodes?version=1", headers=historian).status_code == 200
        assert client.get("/v1/taxonomy/nodes?version=2", headers=historian).status_code == 200
        limited = client.get("/v1/taxonomy/diff?from=1&to=3", headers=historian)  # v1-v3 not compared yet
        error = assert_error(limited, 429, "rate_limited")
        assert "CPU budget" in error["message"] and int(limited.headers["retry-after"]) >= 5
        # the key's other requests, its cached reads, and other keys are not affected
        assert client.get("/v1/taxonomy", headers=historian).status_code == 200
        assert client.get("/v1/taxonomy/nodes?version=1", headers=historian).status_code == 200
        assert client.get("/v1/taxonomy/diff?from=1&to=3", headers=other).status_code == 200
