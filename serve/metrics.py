"""Prometheus metrics of one app instance (own registry: several apps may live in a process)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from agent.contract import TagResult

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "tagsmith_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=r
        )
        self.http_latency = Histogram(
            "tagsmith_http_request_duration_seconds", "time to answer a request",
            ["method", "route"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.tags = Counter("tagsmith_tagged_products", "products tagged", ["pipeline", "source"], registry=r)
        self.needs_review = Counter(
            "tagsmith_needs_review", "results flagged for review", ["pipeline"], registry=r
        )
        self.rejections = Counter(
            "tagsmith_validator_rejections", "answers rejected by the validator or off the letters", registry=r
        )
        self.reasks = Counter("tagsmith_llm_reasks", "LLM calls beyond the first for a product", registry=r)
        self.fallbacks = Counter(
            "tagsmith_llm_fallbacks", "results where the retrieval fallback replaced the LLM", registry=r
        )
        self.degraded = Counter(
            "tagsmith_degraded_results", "results answered without the unavailable LLM", registry=r
        )
        self.llm_latency = Histogram(
            "tagsmith_llm_latency_seconds", "one LLM backend call", ["outcome"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.taxonomy_version = Gauge("tagsmith_taxonomy_version", "taxonomy version in use", registry=r)
        self.index_examples = Gauge("tagsmith_index_examples", "examples in the index in use", registry=r)
        self.engine_batch = Histogram(
            "tagsmith_engine_batch_products", "products per engine batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r,
        )
        self.engine_queue = Gauge("tagsmith_engine_queued_products", "products waiting", registry=r)
        self.rate_limited = Counter("tagsmith_rate_limited", "requests refused with 429", registry=r)
        self.auth_failures = Counter(
            "tagsmith_auth_failures", "requests with credentials refused: invalid (401) or "
            "from an address over its failed-authentication budget (limited, 429)", ["outcome"], registry=r,
        )
        self.job_items = Counter("tagsmith_job_items", "job items written", ["outcome"], registry=r)
        self.review_enqueue = Counter(
            "tagsmith_review_enqueue", "flagged results for the review queue: written (new or updated item), "
            "dropped (buffer full), failed (the store write failed)", ["outcome"], registry=r,
        )
        self.attribute_values = Counter(
            "tagsmith_attribute_values", "attribute values returned, by where they were read",
            ["source"], registry=r,
        )
        self.extractor_fit = Histogram(
            "tagsmith_attribute_extractor_fit_seconds",
            "fitting the attribute extractor on a new taxonomy version or index generation",
            buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0), registry=r,
        )

    def observe_results(self, results: Iterable[TagResult], *, source: str) -> None:
        for res in results:
            llm = res.evidence.llm
            self.tags.labels(res.pipeline, source).inc()
            if res.needs_review:
                self.needs_review.labels(res.pipeline).inc()
            if llm.rejections:
                self.rejections.inc(len(llm.rejections))
            if llm.attempts > 1:
                self.reasks.inc(llm.attempts - 1)
            if llm.fallback_used:
                self.fallbacks.inc()
            if llm.degraded:
                self.degraded.inc()
            for attr in res.attributes:
                for value in attr.values:
                    self.attribute_values.labels(value.evidence.source).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
