"""The serving side of attribute tagging: the batcher never mixes attribute selections, and
the attribute extractor is fitted when a view is built (start-up, a new index generation, a
new taxonomy version), in the background for a big labelled pool, never inside a request."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from agent.attributes import AttributeExtractor
from agent.contract import AttributeSelection, Evidence, LLMEvidence, Product, TagResult, Timings
from serve import tagging_state as tagging_state_module
from serve.batcher import Batcher
from serve.metrics import Metrics
from tests.serve.helpers import auth, gate_background, make_keys, running_app, service_settings


def _result(product: Product) -> TagResult:
    return TagResult(
        id=product.id, tags=[], needs_review=True, taxonomy_version=1, pipeline="fake",
        evidence=Evidence(neighbors=[], llm=LLMEvidence(attempts=0, fallback_used=False)),
        timings_ms=Timings(retrieval=0, llm=0, validation=0, total=0),
    )


def test_the_batcher_tags_each_selection_in_its_own_batch() -> None:
    calls: list[tuple[list[str | None], AttributeSelection | None]] = []

    def tag(products: Sequence[Product], attributes: AttributeSelection | None) -> list[TagResult]:
        calls.append(([p.id for p in products], attributes))
        return [_result(p) for p in products]

    async def main() -> list[list[TagResult]]:
        batcher = Batcher(tag, Metrics(), max_batch=64, workers=1)
        await batcher.start()
        try:
            requests: list[tuple[list[str], AttributeSelection | None]] = [
                (["a1", "a2"], None), (["b1"], "off"), (["c1"], ["Color"]), (["d1"], None),
                (["e1"], ["Color"]), (["f1"], "off"), (["g1"], ["Size"]),
            ]
            return await asyncio.gather(*(
                batcher.tag([Product(id=i, title=f"product {i}") for i in ids], sel) for ids, sel in requests
            ))
        finally:
            await batcher.stop()

    answers = asyncio.run(main())
    # every request gets its own products' results back
    assert [[r.id for r in a] for a in answers] == [["a1", "a2"], ["b1"], ["c1"], ["d1"], ["e1"], ["f1"], ["g1"]]
    # one call per selection, oldest request first, each with the requests asking the same
    assert calls == [
        (["a1", "a2", "d1"], None), (["b1", "f1"], "off"), (["c1", "e1"], ["Color"]), (["g1"], ["Size"]),
    ]


@pytest.fixture
def fits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The threads AttributeExtractor.fit ran in, in order."""

    seen: list[str] = []
    original = AttributeExtractor.fit.__func__  # type: ignore[attr-defined]

    def counting(cls: type[AttributeExtractor], *args: Any, **kwargs: Any) -> AttributeExtractor:
        seen.append(threading.current_thread().name)
        return original(cls, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(AttributeExtractor, "fit", classmethod(counting))
    return seen


def until(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_the_extractor_is_fitted_with_the_view_not_by_requests(attrs_dir: Path, fits: list[str]) -> None:
    keys = make_keys(attrs_dir)
    with running_app(service_settings(attrs_dir)) as client:
        assert len(fits) == 1  # at start-up, before the service is ready
        t = auth(keys["tags+feedback"])
        for query in ("", "?attributes=off", "?attributes=Color"):
            assert client.post(f"/v1/tags{query}", json={"title": "Black cotton tee"}, headers=t).status_code == 200
        body = {"products": [{"title": "Grey wool socks"}, {"title": "Cast iron skillet"}]}
        assert client.post("/v1/tags:batch", json=body, headers=t).status_code == 200
        assert len(fits) == 1
        # a new index generation (feedback) gets its extractor within the update: a small pool
        fb = {"product": {"id": "fb-1", "title": "Zorblax tee"}, "verdict": "correct",
              "tags": ["apparel/tops/tees"], "attribute_values": {"brand": "Zorblax"}}
        assert client.post("/v1/feedback", json=fb, headers=t).status_code == 201
        assert len(fits) == 2
        state = client.app.state.tagsmith.services.tagging  # type: ignore[attr-defined]
        assert state.current.extractor_stale is False
        # a new taxonomy version (an edit) too: its new value is read at once
        heather = {"title": "Heather crew neck tee"}
        assert "Color" not in {a["name"] for a in client.post("/v1/tags", json=heather, headers=t).json()["attributes"]}
        w = {**auth(keys["taxonomy:write"]), "If-Match": "1"}
        edit = {"edits": [{"op": "add_attribute_value", "attribute": "color", "id": "color/heather", "name": "Heather"}]}
        assert client.post("/v1/taxonomy/edits", json=edit, headers=w).status_code == 201
        assert len(fits) == 3
        answer = client.post("/v1/tags", json=heather, headers=t).json()
        assert answer["taxonomy_version"] == 2
        assert {a["name"]: [v["value"] for v in a["values"]] for a in answer["attributes"]}["Color"] == ["Heather"]
        assert len(fits) == 3
        metrics = client.get("/metrics").text
        assert "tagsmith_attribute_extractor_fit_seconds_count 2.0" in metrics
        assert 'tagsmith_attribute_values_total{source="text"}' in metrics


def test_a_big_labelled_pool_refits_in_the_background(
    attrs_dir: Path, fits: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tagging_state_module, "EXTRACTOR_SYNC_MAX", 0)  # every labelled pool is "big"
    monkeypatch.setattr(tagging_state_module, "EXTRACTOR_REFIT_DELAY_S", 0.3)
    # the background refit waits for the test's go: "stale meanwhile" holds however slow the cores
    go = gate_background(monkeypatch, "_refit")
    keys = make_keys(attrs_dir)
    with running_app(service_settings(attrs_dir)) as client:
        t = auth(keys["tags+feedback"])
        state = client.app.state.tagsmith.services.tagging  # type: ignore[attr-defined]
        first = state.current.tagger.extractor
        product = {"title": "Zorblax crew neck t-shirt white"}

        def brands() -> list[str]:
            result = client.post("/v1/tags", json=product, headers=t).json()
            return [v["value"] for a in result["attributes"] if a["attribute"] == "brand" for v in a["values"]]

        fb = {"product": {"id": "fb-1", "title": "Zorblax graphic tee black"}, "verdict": "correct",
              "tags": ["apparel/tops/tees"], "attribute_values": {"brand": "Zorblax"}}
        assert client.post("/v1/feedback", json=fb, headers=t).status_code == 201
        # the new generation serves at once, with the previous extractor meanwhile
        view = state.current
        assert view.index.get("fb-1") is not None and view.extractor_stale is True
        assert view.tagger.extractor is first and len(fits) == 1
        assert brands() == []
        go.set()
        until(lambda: not state.current.extractor_stale)
        assert state.current.tagger.extractor is not first and state.current.index is view.index
        assert len(fits) == 2 and fits[-1] != "MainThread"
        assert brands() == ["Zorblax"]
