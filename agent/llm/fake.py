"""Backends for tests, next to the real ones: they inject faults, they do not fake success.

- :class:`FaultInjectingBackend` wraps a real backend (or a scripted one) and replaces a
  configurable share of its outputs with garbage: invalid JSON, unknown ids, ids of
  another taxonomy version, the prompt echoed back; or raises timeouts.
- :class:`FixedLatencyBackend` answers after a fixed delay with the first allowed id of the
  schema: a fault-free stand-in for load tests of the service's own overhead.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from agent.llm.base import (
    ChatMessage,
    Generation,
    LLMBackend,
    LLMUnavailableError,
    ModelInfo,
    parse_json,
)

GARBAGE_KINDS = ("invalid_json", "unknown_id", "foreign_id", "echo_prompt", "empty", "timeout")


def allowed_ids(schema: Mapping[str, Any]) -> list[str]:
    """The enum of a ``tags_schema`` (empty when the schema has another shape)."""
    try:
        return list(schema["properties"]["tags"]["items"]["enum"])
    except (KeyError, TypeError):
        return []


class FixedLatencyBackend:
    def __init__(self, latency_s: float = 0.05, *, max_concurrency: int = 64, info: ModelInfo | None = None) -> None:
        """``info``: what the backend claims about its model (default: a plain untuned one),
        e.g. a fine-tuned model's prompt profile and blend weight."""
        self._latency_s = latency_s
        self._info = info or ModelInfo(
            name="fixed-latency", model=f"fixed-latency-{latency_s * 1000:.0f}ms", max_concurrency=max_concurrency
        )
        self.calls = 0
        self._lock = threading.Lock()

    @property
    def info(self) -> ModelInfo:
        return self._info

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
        time.sleep(self._latency_s)
        with self._lock:
            self.calls += 1
        ids = allowed_ids(schema)
        text = json.dumps({"tags": ids[:1]})
        return Generation(
            text=text, parsed=parse_json(text), latency_ms=self._latency_s * 1000.0,
            completion_tokens=8, finish_reason="stop",
        )

    def close(self) -> None:
        pass


class FaultInjectingBackend:
    """Wraps ``inner``; with probability ``fault_rate`` returns one of ``kinds`` of garbage."""

    def __init__(
        self,
        inner: LLMBackend,
        *,
        fault_rate: float = 0.3,
        kinds: Sequence[str] = GARBAGE_KINDS,
        foreign_ids: Sequence[str] = ("gid://other-version/123",),
        seed: int = 0,
    ) -> None:
        unknown = set(kinds) - set(GARBAGE_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        self._inner = inner
        self._rate = fault_rate
        self._kinds = tuple(kinds)
        self._foreign = tuple(foreign_ids)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.faults: dict[str, int] = dict.fromkeys(self._kinds, 0)
        self.calls = 0

    @property
    def info(self) -> ModelInfo:
        # the inner model's, but it only generates (garbage included): it does not score
        inner = self._inner.info
        return replace(inner, name=f"faulty({inner.name})", scores_options=False)

    def _pick(self) -> str | None:
        with self._lock:
            self.calls += 1
            if self._rng.random() >= self._rate:
                return None
            kind = self._rng.choice(self._kinds)
            self.faults[kind] += 1
            return kind

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
        kind = self._pick()
        if kind is None:
            return self._inner.generate(
                messages, schema, max_tokens=max_tokens, temperature=temperature,
                seed=seed, top_logprobs=top_logprobs,
            )
        if kind == "timeout":
            raise LLMUnavailableError("injected fault: timeout")
        text = {
            "invalid_json": '{"tags": ["',
            "unknown_id": json.dumps({"tags": ["definitely-not-a-tag"]}),
            "foreign_id": json.dumps({"tags": [self._foreign[0]]}),
            "echo_prompt": messages[-1].content if messages else "",
            "empty": "",
        }[kind]
        return Generation(text=text, parsed=parse_json(text), finish_reason="fault")

    def close(self) -> None:
        self._inner.close()
