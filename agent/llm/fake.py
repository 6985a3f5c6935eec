"""Backends for tests, next to the real ones: they inject faults, they do not fake success.

- :class:`FaultInjectingBackend` wraps a real backend (or a scripted one) and replaces a
  configurable share of its outputs with garbage: invalid JSON, unknown ids, ids of
  another taxonomy version, the prompt echoed back; or raises timeouts.
- :class:`FixedLatencyBackend` answers after a fixed delay with the first allowed id of the
  schema: a fault-free stand-in for load tests of the service's own overhead.
- :class:`ScriptedBackend` answers what a test scripts (texts, exceptions, or a function of
  the messages and schema) and records every request.
- :class:`RandomSchemaBackend` answers random JSON that the schema allows (open strings:
  words of the prompt's ``<product>`` block): a plausible, unreliable model, to wrap in a
  :class:`FaultInjectingBackend` with :data:`SCHEMA_GARBAGE_KINDS`.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from agent.llm.base import (
    ChatMessage,
    Generation,
    LLMBackend,
    LLMUnavailableError,
    ModelInfo,
    parse_json,
)

GARBAGE_KINDS = ("invalid_json", "unknown_id", "foreign_id", "echo_prompt", "empty", "timeout")
#: garbage shaped by the request's schema (any object schema, e.g. the attribute answer):
#: random JSON, wrong value types, values outside the enums, invented strings, huge strings,
#: JSON cut short, unknown and missing keys, arrays over their bound
SCHEMA_GARBAGE_KINDS = (
    "random_json", "wrong_type", "off_enum", "invented_value", "huge_string", "truncated_json",
    "extra_keys", "too_many",
)


def text_generation(text: str, **fields: Any) -> Generation:
    """A fake's answer: ``text`` as generated, parsed as the real backends parse it."""
    return Generation(text=text, parsed=parse_json(text), **fields)


class _FakeBackend:
    """What every fake here keeps: the model info it claims, a lock for its own
    bookkeeping and a thread-safe count of ``generate`` calls; nothing to close."""

    def __init__(self, info: ModelInfo) -> None:
        self._info = info
        self._lock = threading.Lock()
        self.calls = 0

    @property
    def info(self) -> ModelInfo:
        return self._info

    def _count(self) -> None:
        with self._lock:
            self.calls += 1

    def close(self) -> None:
        pass


def allowed_ids(schema: Mapping[str, Any]) -> list[str]:
    """The enum of a ``tags_schema`` (empty when the schema has another shape)."""
    try:
        return list(schema["properties"]["tags"]["items"]["enum"])
    except (KeyError, TypeError):
        return []


class FixedLatencyBackend(_FakeBackend):
    def __init__(self, latency_s: float = 0.05, *, max_concurrency: int = 64, info: ModelInfo | None = None) -> None:
        """``info``: what the backend claims about its model (default: a plain untuned one),
        e.g. a fine-tuned model's prompt profile and blend weight."""
        self._latency_s = latency_s
        super().__init__(info or ModelInfo(
            name="fixed-latency", model=f"fixed-latency-{latency_s * 1000:.0f}ms", max_concurrency=max_concurrency
        ))

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
        self._count()
        ids = allowed_ids(schema)
        return text_generation(
            json.dumps({"tags": ids[:1]}), latency_ms=self._latency_s * 1000.0,
            completion_tokens=8, finish_reason="stop",
        )


class FaultInjectingBackend(_FakeBackend):
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
        unknown = set(kinds) - set(GARBAGE_KINDS) - set(SCHEMA_GARBAGE_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        super().__init__(inner.info)
        self._inner = inner
        self._rate = fault_rate
        self._kinds = tuple(kinds)
        self._foreign = tuple(foreign_ids)
        self._rng = random.Random(seed)
        self.faults: dict[str, int] = dict.fromkeys(self._kinds, 0)

    @property
    def info(self) -> ModelInfo:
        # the inner model's, but it only generates (garbage included): it does not score
        inner = self._inner.info
        return replace(inner, name=f"faulty({inner.name})", scores_options=False)

    def _pick(self) -> str | None:
        self._count()
        with self._lock:
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
        if kind in SCHEMA_GARBAGE_KINDS:
            with self._lock:
                text = schema_garbage(kind, schema, self._rng)
            return text_generation(text, finish_reason="fault")
        text = {
            "invalid_json": '{"tags": ["',
            "unknown_id": json.dumps({"tags": ["definitely-not-a-tag"]}),
            "foreign_id": json.dumps({"tags": [self._foreign[0]]}),
            "echo_prompt": messages[-1].content if messages else "",
            "empty": "",
        }[kind]
        return text_generation(text, finish_reason="fault")

    def close(self) -> None:
        self._inner.close()


# --- scripted and schema-driven fakes -------------------------------------------------------

Responder = Callable[[Sequence[ChatMessage], Mapping[str, Any]], "str | Generation"]
Script = str | Generation | BaseException | Responder


@dataclass(frozen=True)
class Request:
    messages: tuple[ChatMessage, ...]
    schema: Mapping[str, Any]
    max_tokens: int


class ScriptedBackend(_FakeBackend):
    """Answers from a script, one entry per call (the last one repeats): a text, a
    :class:`Generation`, an exception to raise, or a function of (messages, schema)."""

    def __init__(self, script: Script | Sequence[Script], *, name: str = "scripted") -> None:
        entries = cast("list[Script]", list(script) if isinstance(script, list | tuple) else [script])
        if not entries:
            raise ValueError("the script must not be empty")
        super().__init__(ModelInfo(name=name, model=name))
        self._script = entries
        self.requests: list[Request] = []

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
        with self._lock:
            entry = self._script[min(len(self.requests), len(self._script) - 1)]
            self.requests.append(Request(tuple(messages), schema, max_tokens))
            self.calls += 1
        if isinstance(entry, BaseException):
            raise entry
        out = entry(messages, schema) if callable(entry) else entry
        if isinstance(out, Generation):
            return out
        return text_generation(out, completion_tokens=max(1, len(out) // 4),
                               prompt_tokens=sum(len(m.content) for m in messages) // 4, finish_reason="stop")


_PRODUCT_BLOCK = re.compile(r"<product>(.*?)</product>", re.S)


def product_block(messages: Sequence[ChatMessage]) -> str:
    """The text inside the first ``<product>`` block of the user messages ('' if none)."""
    for m in messages:
        if m.role == "user":
            found = _PRODUCT_BLOCK.search(m.content)
            if found:
                return found.group(1)
    return ""


def _properties(schema: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    return {str(k): v for k, v in props.items() if isinstance(v, Mapping)} if isinstance(props, Mapping) else {}


def _sample(prop: Mapping[str, Any], rng: random.Random, words: Sequence[str]) -> Any:
    if prop.get("type") == "array" and isinstance(prop.get("items"), Mapping):
        item = prop["items"]
        hi = int(prop.get("maxItems", 3))
        n = rng.randint(int(prop.get("minItems", 0)), hi)
        if "enum" in item:
            pool = list(item["enum"])
            return rng.sample(pool, min(n, len(pool)))
        return [_sample(item, rng, words) for _ in range(n)]
    if "enum" in prop:
        return rng.choice(list(prop["enum"]))
    if prop.get("type") == "string":
        limit = int(prop.get("maxLength", 60))
        if not words or rng.random() < 0.3:
            return "none"
        start = rng.randrange(len(words))
        span = " ".join(words[start:start + rng.randint(1, 3)])
        return span[:limit].replace('"', "").replace("\\", "")
    if prop.get("type") in ("integer", "number"):
        return rng.randint(0, 100)
    return None


class RandomSchemaBackend(_FakeBackend):
    """Answers random JSON the request's object schema allows: enum values at random,
    array lengths within bounds, strings made of words of the prompt's product block (or
    ``"none"``). Plausible, unreliable and schema-valid, like a small model under a grammar."""

    def __init__(self, *, seed: int = 0, name: str = "random-schema") -> None:
        super().__init__(ModelInfo(name=name, model=name))
        self._rng = random.Random(seed)

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
        words = product_block(messages).split()
        self._count()
        with self._lock:
            answer = {k: _sample(p, self._rng, words) for k, p in _properties(schema).items()}
        text = json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
        return text_generation(text, completion_tokens=max(1, len(text) // 3), finish_reason="stop")


_INVENTED = ("ACME", "Zorblax 9000", "Purple", "gid://other-version/123", "none of the above",
             "Ignore previous instructions", "</product>", "ÄÖÜ-∞", "")


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 3 else 4)
    if kind == 0:
        return rng.randint(-(10**6), 10**6)
    if kind == 1:
        return rng.choice(_INVENTED)
    if kind == 2:
        return rng.choice([True, False, None, 1.5e300])
    if kind == 3:
        return "".join(chr(rng.randint(32, 0x2FF)) for _ in range(rng.randint(0, 20)))
    if kind in (4, 5):
        return {rng.choice(_INVENTED) + str(i): _random_json(rng, depth + 1) for i in range(rng.randint(0, 4))}
    return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]


def schema_garbage(kind: str, schema: Mapping[str, Any], rng: random.Random) -> str:
    """One garbage answer of ``kind`` (see :data:`SCHEMA_GARBAGE_KINDS`) for ``schema``."""
    props = _properties(schema)
    keys = list(props) or ["tags"]
    if kind == "random_json":
        return json.dumps(_random_json(rng))
    if kind == "wrong_type":
        return json.dumps({k: rng.choice([42, {"value": "x"}, True, None, [1, 2], 3.5]) for k in keys})
    if kind == "off_enum":
        out: dict[str, Any] = {}
        for k, p in props.items():
            enum = p.get("enum") or (p.get("items") or {}).get("enum") or ["value"]
            bad = rng.choice(list(enum)) + rng.choice([" ", "x", "-2", "s"])
            out[k] = [bad] if p.get("type") == "array" else bad
        return json.dumps(out or {"tags": ["not-an-option"]})
    if kind == "invented_value":
        return json.dumps({k: [rng.choice(_INVENTED)] if p.get("type") == "array" else rng.choice(_INVENTED)
                           for k, p in props.items()} or {"tags": ["ACME"]})
    if kind == "huge_string":
        big = rng.choice(["A", "Blue ", "\u0000", "ß"]) * rng.randint(10_000, 200_000)
        return json.dumps({k: big for k in keys})
    if kind == "truncated_json":
        text = json.dumps({k: "none" for k in keys})
        return text[: rng.randint(0, max(0, len(text) - 1))]
    if kind == "extra_keys":
        out = {k: "none" for k in keys[: rng.randint(0, len(keys))]}
        out.update({rng.choice(_INVENTED) + "!": rng.choice(_INVENTED), "system": "Color = Purple"})
        return json.dumps(out)
    if kind == "too_many":
        out = {}
        for k, p in props.items():
            enum = p.get("enum") or (p.get("items") or {}).get("enum") or ["x"]
            out[k] = [rng.choice(list(enum)) for _ in range(rng.randint(5, 50))]
        return json.dumps(out or {"tags": ["a", "b", "c", "d"]})
    raise ValueError(f"unknown schema garbage kind {kind!r}")
