"""The engine follows what other processes publish, jobs wait out an LLM outage, and big
indexes retrain their lexical classifier in the background."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from agent.llm import LLMUnavailableError
from agent.llm.fake import FixedLatencyBackend
from retrieval import IndexStore, build_index
from serve import tagging_state as tagging_state_module
from serve.runtime import embedder_from_settings
from taxonomy import TaxonomyStore
from tests.serve.helpers import (
    auth,
    gate_background,
    make_keys,
    running_app,
    service_settings,
    shop_examples,
)


def until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_versions_and_generations_published_elsewhere_are_picked_up(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    settings = service_settings(shop_dir, server={"refresh_interval_s": 0.2})
    with running_app(settings) as client:
        t = auth(keys["tags"])

        def tag(title: str) -> dict[str, Any]:
            result: dict[str, Any] = client.post("/v1/tags", json={"title": title}, headers=t).json()
            return result

        # another process (the CLI) publishes a taxonomy version…
        with TaxonomyStore(settings.taxonomy_db_url) as store:
            store.apply([{"op": "rename", "id": "apparel/socks", "name": "Socks & Hosiery"}], expected_version=1)
        until(lambda: tag("wool socks")["taxonomy_version"] == 2)
        assert tag("wool socks")["tags"][0]["name"] == "Socks & Hosiery"
        # …and an index generation where socks are examples of shoes
        embedder = embedder_from_settings(settings)
        examples = [ex if "socks" not in ex.tags[0] else type(ex)(ex.id, ex.title, ex.description, ("apparel/shoes",))
                    for ex in shop_examples()]
        IndexStore(shop_dir / "index").publish(build_index(embedder, examples), embedder=embedder.name)
        until(lambda: tag("Wool hiking socks 3 pairs")["tags"][0]["id"] == "apparel/shoes")
        assert "gen-000002" in client.get("/readyz").json()["checks"]["index"]


class SwitchableBackend(FixedLatencyBackend):
    """Fault injection: every call fails while ``down`` is set."""

    def __init__(self) -> None:
        super().__init__(0.0)
        self.down = True

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise LLMUnavailableError("injected: connection refused")
        return super().generate(*args, **kwargs)


def test_a_job_waits_while_the_llm_is_down_then_finishes(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    llm = SwitchableBackend()
    settings = service_settings(shop_dir, tagging={"pipeline": "rag"}, jobs={"batch_size": 4})
    with running_app(settings, llm=llm) as client:
        t = auth(keys["tags"])
        body = "".join(json.dumps({"custom_id": str(i), "product": {"title": f"tee {i}"}}) + "\n" for i in range(10))
        job_id = client.post("/v1/jobs", content=body.encode(), headers=t).json()["id"]
        until(lambda: "LLM backend is unavailable" in (client.get(f"/v1/jobs/{job_id}", headers=t).json()["message"] or ""))
        job = client.get(f"/v1/jobs/{job_id}", headers=t).json()
        assert job["state"] == "running" and job["counts"]["succeeded"] == 0
        assert client.get(f"/v1/jobs/{job_id}/results", headers=t).text == ""  # no degraded results written
        llm.down = False
        until(lambda: client.get(f"/v1/jobs/{job_id}", headers=t).json()["state"] == "completed", timeout=90)
        lines = [json.loads(x) for x in client.get(f"/v1/jobs/{job_id}/results", headers=t).text.splitlines()]
        assert len(lines) == 10 and not any(x["degraded"] for x in lines)
        assert all(x["result"]["evidence"]["llm"]["attempts"] >= 1 for x in lines)
        assert client.get(f"/v1/jobs/{job_id}", headers=t).json()["message"] is None


def test_big_indexes_retrain_the_lexical_classifier_in_the_background(
    shop_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tagging_state_module, "LEXICAL_SYNC_MAX", 10)
    monkeypatch.setattr(tagging_state_module, "LEXICAL_RETRAIN_DELAY_S", 0.5)
    # the retrain waits for the test's go: no retrain between the feedback posts, however slow
    go = gate_background(monkeypatch, "_retrain")
    keys = make_keys(shop_dir)
    with running_app(service_settings(shop_dir, tagging={"pipeline": "hybrid"})) as client:
        f = auth(keys["feedback"])
        store = IndexStore(shop_dir / "index")
        classes_before = store.manifest().extra["lexical"]["classes"]
        for i in range(3):  # a burst of feedback: one retrain after it
            r = client.post("/v1/feedback", json={"product": {"id": f"s{i}", "title": f"Silk scarf {i}"},
                                                  "verdict": "correct", "tags": ["toys/puzzles"]}, headers=f)
            assert r.status_code == 201
        assert store.manifest().generation == "gen-000004"  # published at once, classifier not yet retrained
        go.set()
        # (a post slower than the delay lets a second timer fire: two refits, gen-000006 too)
        until(lambda: store.manifest().generation >= "gen-000005")
        manifest = store.manifest()
        assert manifest.count == 42 and manifest.extra["lexical"]["examples"] == 42
        assert manifest.extra["lexical"]["classes"] == classes_before


class CrashingBackend(FixedLatencyBackend):
    """Fault injection: a bug (not an outage) on products whose prompt mentions 'explode'."""

    def generate(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        if any("explode" in m.content for m in messages):
            raise RuntimeError("injected bug")
        return super().generate(messages, *args, **kwargs)


def test_an_item_that_cannot_be_tagged_gets_an_error_line(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    settings = service_settings(shop_dir, tagging={"pipeline": "rag"}, jobs={"batch_size": 4})
    with running_app(settings, llm=CrashingBackend(0.0)) as client:
        t = auth(keys["tags"])
        titles = ["tee", "socks", "explode pan", "puzzle", "headphones"]
        body = "".join(json.dumps({"custom_id": str(i), "product": {"title": x}}) + "\n" for i, x in enumerate(titles))
        job_id = client.post("/v1/jobs", content=body.encode(), headers=t).json()["id"]
        until(lambda: client.get(f"/v1/jobs/{job_id}", headers=t).json()["state"] == "completed")
        assert client.get(f"/v1/jobs/{job_id}", headers=t).json()["counts"] == {"total": 5, "succeeded": 4, "failed": 1}
        lines = [json.loads(x) for x in client.get(f"/v1/jobs/{job_id}/results", headers=t).text.splitlines()]
        assert [x["custom_id"] for x in lines] == ["0", "1", "2", "3", "4"]
        assert lines[2]["result"] is None and lines[2]["error"] == {"code": "tagging_failed", "message": "injected bug"}
        assert all(x["error"] is None for i, x in enumerate(lines) if i != 2)
        assert client.get("/healthz").json()["status"] == "ok"  # the worker survived


class GatedBackend(CrashingBackend):
    """Holds the first call made after :meth:`arm` until :attr:`release` is set: the engine's
    only worker stays busy for exactly as long as the test needs, however loaded the cores."""

    def __init__(self) -> None:
        super().__init__(0.0)
        self.armed, self.entered, self.release = False, threading.Event(), threading.Event()

    def generate(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        if self.armed:
            self.armed = False
            self.entered.set()
            assert self.release.wait(60), "never released"
        return super().generate(messages, *args, **kwargs)


def test_requests_batched_together_do_not_share_a_failure(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    settings = service_settings(shop_dir, tagging={"pipeline": "rag"}, server={"engine_workers": 1})
    llm = GatedBackend()
    with running_app(settings, llm=llm) as client:
        t = auth(keys["tags"])
        titles = ["wool socks", "explode pan", "jigsaw puzzle", "usb-c cable"]
        responses: dict[str, Any] = {}

        def post(title: str) -> None:
            responses[title] = client.post("/v1/tags", json={"title": title}, headers=t)

        def queued() -> float:
            line = next(x for x in client.get("/metrics").text.splitlines()
                        if x.startswith("tagsmith_engine_queued_products "))
            return float(line.rsplit(" ", 1)[1])

        llm.armed = True
        first = threading.Thread(target=post, args=("cotton tee",))
        first.start()
        assert llm.entered.wait(60)  # the only engine worker is busy with it: the others queue up together
        others = [threading.Thread(target=post, args=(x,)) for x in titles]
        for th in others:
            th.start()
        until(lambda: queued() == 4)
        llm.release.set()
        for th in [first, *others]:
            th.join(timeout=60)
        assert responses["explode pan"].status_code == 500
        assert responses["explode pan"].json()["error"]["code"] == "internal_error"
        assert all(responses[x].status_code == 200 for x in ["cotton tee", "wool socks", "jigsaw puzzle", "usb-c cable"])
        metrics = dict(
            line.rsplit(" ", 1) for line in client.get("/metrics").text.splitlines()
            if line.startswith("tagsmith_engine_batch_products_")
        )
        # two engine batches: the first request alone, then the four queued ones together
        assert float(metrics["tagsmith_engine_batch_products_count"]) == 2
        assert float(metrics["tagsmith_engine_batch_products_sum"]) == 5
