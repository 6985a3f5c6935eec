"""Watch the LLM backend: count failing and succeeding calls, time them.

Whether one result was answered without the LLM because the backend was down is decided by
the tagger, per product, from that product's own calls (``evidence.llm.degraded``): two
batches tagged at once cannot mix up each other's outage. The counts here are for metrics
and readiness only; so is the canary /readyz sends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from agent.llm import (
    ChatMessage,
    Generation,
    LLMBackend,
    LLMError,
    ModelInfo,
    OptionScores,
    option_scorer,
    tags_schema,
)
from agent.llm.pool import EndpointStatus
from serve.metrics import Metrics

CANARY_CHOICES = ["yes", "no"]


def llm_canary(llm: LLMBackend) -> str | None:
    """One tiny constrained request; None when the backend answers on-schema, else why not."""
    try:
        gen = llm.generate(
            [ChatMessage("user", "Is water wet? Answer yes or no.")],
            tags_schema(CANARY_CHOICES),
            max_tokens=16,
        )
    except LLMError as exc:
        return str(exc)
    tags = gen.parsed.get("tags") if isinstance(gen.parsed, dict) else None
    if not isinstance(tags, list) or not tags or not all(t in CANARY_CHOICES for t in tags):
        return f"LLM answered off-schema: {gen.text[:80]!r}"
    return None


def describe_endpoints(endpoints: Sequence[EndpointStatus]) -> str:
    """One line for /readyz: how many endpoints of a pool take traffic, and why the others do not."""
    healthy = sum(e.healthy for e in endpoints)
    out = [
        f"{e.base_url} ejected, next probe in {e.ejected_for_s:.1f} s ({e.last_error})"
        for e in endpoints if not e.healthy
    ]
    return f"{healthy} of {len(endpoints)} healthy" + (": " + "; ".join(out) if out else "")


class LLMHealth:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.failures = 0
        self.successes = 0
        self.last_error: str | None = None

    def record(self, error: Exception | None) -> None:
        with self._lock:
            if error is None:
                self.successes += 1
            else:
                self.failures += 1
                self.last_error = str(error)[:300]


class _Tracked:
    """The backend, its calls counted and timed. What it knows about its model (``info``:
    prompt profile, blend weight, scoring…) is handed on as one object, so the tagger sees
    exactly what it would see without the wrapper."""

    def __init__(self, inner: LLMBackend, health: LLMHealth, metrics: Metrics, *, owned: bool) -> None:
        self.inner = inner
        self.health = health
        self._metrics = metrics
        self._owned = owned

    @property
    def info(self) -> ModelInfo:
        return self.inner.info

    def _done(self, start: float, error: Exception | None) -> None:
        self.health.record(error)
        outcome = "ok" if error is None else "error"
        self._metrics.llm_latency.labels(outcome).observe(time.perf_counter() - start)

    def generate(
        self,
        messages: Sequence[ChatMessage],
        schema: Mapping[str, Any],
        *,
        max_tokens: int = 64,
        temperature: float = 0.0,
        seed: int = 0,
        top_logprobs: int = 0,
    ) -> Generation:
        start = time.perf_counter()
        try:
            out = self.inner.generate(
                messages, schema, max_tokens=max_tokens, temperature=temperature, seed=seed,
                top_logprobs=top_logprobs,
            )
        except LLMError as exc:
            self._done(start, exc)
            raise
        self._done(start, None)
        return out

    def score_options(
        self,
        messages: Sequence[ChatMessage],
        options: Sequence[str],
        *,
        assistant_prefix: str = "",
        continuations: Sequence[str] = (),
    ) -> OptionScores:
        """Only called when ``info.scores_options`` says the wrapped backend scores."""
        inner = option_scorer(self.inner)
        if inner is None:
            raise TypeError(f"backend {self.inner.info.name!r} does not score options")
        start = time.perf_counter()
        try:
            out = inner.score_options(
                messages, options, assistant_prefix=assistant_prefix, continuations=continuations
            )
        except LLMError as exc:
            self._done(start, exc)
            raise
        self._done(start, None)
        return out

    def close(self) -> None:
        if self._owned:  # a backend handed in by the caller is the caller's to close
            self.inner.close()


def track(inner: LLMBackend, health: LLMHealth, metrics: Metrics, *, owned: bool) -> LLMBackend:
    return _Tracked(inner, health, metrics, owned=owned)
