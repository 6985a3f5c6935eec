"""The tagging pipeline on real components: MWPD taxonomy and pool examples read from
../shared, the real embedder, the real SmolLM2; faults injected only through the fakes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from agent.contract import Product, TagResult
from agent.llm import (
    ChatMessage,
    Generation,
    LLMBackend,
    LLMUnavailableError,
    ModelInfo,
    OptionScores,
)
from agent.llm.fake import FaultInjectingBackend, FixedLatencyBackend
from agent.tagger import Tagger, TaggerConfig
from retrieval import CandidateGenerator
from taxonomy import Snapshot


def _on_taxonomy(result: TagResult, snap: Snapshot) -> None:
    assert result.taxonomy_version == snap.version
    for tag in result.tags:
        assert snap.is_active(tag.id)
        assert tag.path == list(snap.path_names(tag.id))
        assert 0.0 <= tag.confidence <= 1.0


@pytest.mark.parametrize("pipeline", ["knn", "rag", "zero-shot", "cascade"])
def test_pipelines_return_the_contract_on_taxonomy(
    pipeline: str, generator: CandidateGenerator, embedded_llm: LLMBackend,
    dev_products: list[tuple[Product, str]],
) -> None:
    llm = None if pipeline == "knn" else embedded_llm
    tagger = Tagger(generator, llm, config=TaggerConfig(pipeline=pipeline))  # type: ignore[arg-type]
    results = tagger.tag_many([p for p, _ in dev_products[:6]])
    for (product, _), result in zip(dev_products, results, strict=False):
        _on_taxonomy(result, generator.snapshot)
        assert result.id == product.id and len(result.tags) == 1
        payload = json.loads(result.model_dump_json())
        assert set(payload) >= {"tags", "needs_review", "taxonomy_version", "pipeline", "evidence", "timings_ms"}
        assert set(payload["evidence"]["llm"]) >= {"attempts", "fallback_used"}
        if pipeline in ("rag", "zero-shot"):
            assert result.evidence.llm.attempts == 1
        if pipeline == "knn":
            assert result.evidence.llm.attempts == 0


def test_knn_beats_chance_on_real_products(
    generator: CandidateGenerator, dev_products: list[tuple[Product, str]]
) -> None:
    results = Tagger(generator, None, config=TaggerConfig(pipeline="knn")).tag_many(
        [p for p, _ in dev_products]
    )
    hits = sum(r.tags[0].id == gold for r, (_, gold) in zip(results, dev_products, strict=True))
    assert hits >= len(dev_products) // 3  # 283 classes: chance is ~0.4%


def test_5000_requests_with_30_percent_garbage_stay_on_taxonomy(
    generator: CandidateGenerator, dev_products: list[tuple[Product, str]]
) -> None:
    faulty = FaultInjectingBackend(FixedLatencyBackend(0.0), fault_rate=0.3, seed=7)
    tagger = Tagger(generator, faulty, config=TaggerConfig(pipeline="rag"))
    products = [p for p, _ in dev_products]
    retrievals = generator.retrieve(products)
    fallbacks = reasks = 0
    snap = generator.snapshot
    for i in range(5000):
        result = tagger._finish(products[i % len(products)], retrievals[i % len(products)], 0.0)
        _on_taxonomy(result, snap)
        assert len(result.tags) == 1
        fallbacks += result.evidence.llm.fallback_used
        reasks += max(0, result.evidence.llm.attempts - 1)
    assert faulty.calls >= 5000 and sum(faulty.faults.values()) > 1000
    assert reasks > 0
    # a fallback needs three faults in a row: rare but seen over 5,000 requests
    assert 0 < fallbacks < 500


class _InFlight(FixedLatencyBackend):
    """Counts its calls in flight (the peak). With ``rendezvous``, the first call waits
    (bounded) until a second one is in flight: a tagger that runs calls concurrently is
    then seen to, however the threads are scheduled; one that does not fails the test."""

    def __init__(self, latency_s: float, *, max_concurrency: int, rendezvous: bool) -> None:
        super().__init__(latency_s, max_concurrency=max_concurrency)
        self.peak = self._now = 0
        self._cond = threading.Condition()
        self._rendezvous = rendezvous

    def generate(self, messages: Sequence[ChatMessage], schema: Mapping[str, Any], **kw: Any) -> Generation:
        with self._cond:
            self._now += 1
            self.peak = max(self.peak, self._now)
            self._cond.notify_all()
            if self._rendezvous:
                self._rendezvous = False
                self._cond.wait_for(lambda: self._now > 1, timeout=60)
        try:
            return super().generate(messages, schema, **kw)
        finally:
            with self._cond:
                self._now -= 1


def test_tag_many_runs_llm_steps_concurrently_in_input_order(
    generator: CandidateGenerator, dev_products: list[tuple[Product, str]]
) -> None:
    products = [p for p, _ in dev_products[:16]]
    runs: dict[int, tuple[int, list[TagResult]]] = {}
    for concurrency in (1, 8):
        backend = _InFlight(0.05, max_concurrency=concurrency, rendezvous=concurrency > 1)
        tagger = Tagger(generator, backend, config=TaggerConfig(pipeline="rag"))
        results = tagger.tag_many(products)
        runs[concurrency] = (backend.peak, results)
        assert backend.calls == len(products)
    (serial_peak, serial), (parallel_peak, parallel) = runs[1], runs[8]
    print(f"16 products: at most {serial_peak} LLM call(s) at once with concurrency 1, {parallel_peak} with 8")
    assert [r.id for r in parallel] == [p.id for p in products]
    assert [r.tags for r in parallel] == [r.tags for r in serial]
    assert serial_peak == 1  # the backend's max_concurrency is honoured
    assert 1 < parallel_peak <= 8


OUTAGE = "zq-outage-zq"


class _DownForSome(FixedLatencyBackend):
    """Unreachable (as a server that is down) for the products whose text holds OUTAGE."""

    def generate(self, messages: Sequence[ChatMessage], schema: Mapping[str, Any], **kw: Any) -> Generation:
        if OUTAGE in messages[-1].content:
            time.sleep(0.05)
            raise LLMUnavailableError("injected: connection refused")
        return super().generate(messages, schema, **kw)


class _DownScorer(FixedLatencyBackend):
    """An option scorer whose model is gone."""

    def __init__(self) -> None:
        super().__init__(0.0, info=ModelInfo(name="down-scorer", model="gone", scores_options=True))

    def score_options(
        self, messages: Sequence[ChatMessage], options: Sequence[str], *,
        assistant_prefix: str = "", continuations: Sequence[str] = (),
    ) -> OptionScores:
        raise LLMUnavailableError("injected: model unloaded")


def test_degraded_is_decided_per_product_from_its_own_llm_calls(
    generator: CandidateGenerator, dev_products: list[tuple[Product, str]]
) -> None:
    """Products tagged together (concurrent LLM calls) where the backend is down for some:
    exactly those are degraded, with the backend's error as the reason."""
    products = [
        p.model_copy(update={"title": f"{OUTAGE} {p.title}"}) if i % 2 else p
        for i, (p, _) in enumerate(dev_products[:8])
    ]
    backend = _DownForSome(0.05, max_concurrency=8)
    results = Tagger(generator, backend, config=TaggerConfig(pipeline="rag")).tag_many(products)
    for i, result in enumerate(results):
        llm = result.evidence.llm
        assert len(result.tags) == 1  # the retrieval answer when the LLM is down
        if i % 2:
            assert llm.degraded and llm.fallback_used and result.needs_review and llm.attempts == 3
            assert llm.degraded_reason == "injected: connection refused"
        else:
            assert not llm.degraded and llm.degraded_reason is None and llm.attempts == 1
    # a bad answer is not an outage: the fallback is used, but the result is not degraded
    garbage = FaultInjectingBackend(FixedLatencyBackend(0.0), fault_rate=1.0, kinds=("invalid_json",))
    bad = Tagger(generator, garbage, config=TaggerConfig(pipeline="rag")).tag(products[0]).evidence.llm
    assert bad.fallback_used and not bad.degraded and bad.degraded_reason is None
    # scoring backends too
    scored = Tagger(generator, _DownScorer(), config=TaggerConfig(pipeline="rag")).tag(products[0]).evidence.llm
    assert scored.attempts == 1 and scored.degraded and scored.degraded_reason == "injected: model unloaded"
