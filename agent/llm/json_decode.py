"""Constrained greedy decoding of compact JSON objects for in-process (transformers) models.

The embedded backend enforces a request's schema with a llama.cpp grammar
(:func:`agent.llm.grammar.compact_gbnf`); the transformers backend, which runs fine-tuned
models, decodes the same language here: an object whose properties are all required, in
order, each an enum of strings, a ``maxLength``-bounded string (no quote, backslash or
control character, so no escapes), or a bounded array of those, written without any
whitespace between JSON tokens (``{"Brand":"Levi's","Color":["Blue"]}``). That is the
shape of the attribute step's schema (:func:`agent.attributes.llm_step.attributes_schema`)
and the form attribute fine-tuning trains on.

The language is recognised character by character by :class:`CompactObject`; a token is
allowed when every character of its text is. At each step the allowed tokens are found
either by walking the sorted vocabulary along the automaton (structure, keys, enum values:
few branches), or, inside a bounded string, from a precomputed table of the tokens that
hold no quote, backslash or control character, by length, plus the few tokens with a
quote that close the string and go on validly.
"""

from __future__ import annotations

import bisect
import json
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: one segment of the answer: a literal, or a value of some kind
#: ("lit", text) | ("enum", encodings) | ("str", lo, hi) | ("arr", item segment, lo, hi)
Segment = tuple[Any, ...]
#: where the automaton is: (segment index, state inside the segment)
State = tuple[int, Any]

_FORBIDDEN = frozenset('"\\')


def _plain_char(c: str) -> bool:
    """May stand unescaped inside a bounded string."""
    return c not in _FORBIDDEN and unicodedata.category(c) != "Cc" and c != "\ufffd"


def _value_segment(prop: Any) -> Segment | None:
    if not isinstance(prop, Mapping):
        return None
    if "enum" in prop:
        values = list(prop["enum"])
        if not values or not all(isinstance(v, str) for v in values):
            return None
        return ("enum", tuple(dict.fromkeys(json.dumps(v, ensure_ascii=False) for v in values)))
    if prop.get("type") == "string":
        if set(prop) - {"type", "maxLength", "minLength", "description", "title"}:
            return None
        hi, lo = prop.get("maxLength"), prop.get("minLength", 0)
        if not isinstance(hi, int) or not isinstance(lo, int) or isinstance(hi, bool) or not 0 <= lo <= hi:
            return None
        return ("str", lo, hi)
    if prop.get("type") == "array" and isinstance(prop.get("items"), Mapping):
        item = _value_segment(prop["items"])
        if item is None or item[0] == "arr":
            return None
        lo = int(prop.get("minItems", 0))
        hi = prop.get("maxItems")
        hi_n = 1 << 30 if hi is None else int(hi)
        if hi_n < lo:
            return None
        return ("arr", item, lo, hi_n)
    return None


def compile_object(schema: Mapping[str, Any]) -> CompactObject | None:
    """The recogniser of ``schema``'s compact answers; None when the schema has another shape
    (the same subset :func:`agent.llm.grammar.compact_gbnf` compiles)."""
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        return None
    props = schema.get("properties")
    if not isinstance(props, Mapping) or not props:
        return None
    if sorted(schema.get("required", [])) != sorted(props):
        return None
    segments: list[Segment] = [("lit", "{")]
    for i, (key, prop) in enumerate(props.items()):
        value = _value_segment(prop)
        if value is None:
            return None
        # keys as compact_gbnf writes them (json.dumps: ASCII escapes)
        segments.append(("lit", ("," if i else "") + json.dumps(str(key)) + ":"))
        segments.append(value)
    segments.append(("lit", "}"))
    # merge adjacent literals: fewer states
    merged: list[Segment] = []
    for seg in segments:
        if seg[0] == "lit" and merged and merged[-1][0] == "lit":
            merged[-1] = ("lit", merged[-1][1] + seg[1])
        else:
            merged.append(seg)
    return CompactObject(tuple(merged))


def _start(seg: Segment) -> Any:
    kind = seg[0]
    if kind == "lit":
        return 0
    if kind == "enum":
        return ""
    if kind == "str":
        return -1  # before the opening quote
    return (0, 0, None)  # arr: (phase, items, item state); phase 0: before "["


def _step_value(seg: Segment, sub: Any, c: str) -> tuple[bool, Any] | None:
    """Feed ``c`` to a value segment: (done, new state), or None when ``c`` is not allowed."""
    kind = seg[0]
    if kind == "lit":
        text = seg[1]
        if text[sub] != c:
            return None
        return (sub + 1 == len(text), sub + 1)
    if kind == "enum":
        prefix = sub + c
        if not any(e.startswith(prefix) for e in seg[1]):
            return None
        return (prefix in seg[1], prefix)
    if kind == "str":
        lo, hi = seg[1], seg[2]
        if sub == -1:
            return (False, 0) if c == '"' else None
        if c == '"':
            return (True, sub) if sub >= lo else None
        if sub < hi and _plain_char(c):
            return (False, sub + 1)
        return None
    # array
    item, lo, hi = seg[1], seg[2], seg[3]
    phase, count, inner = sub
    if phase == 0:
        return (False, (1, 0, None)) if c == "[" else None
    if phase in (1, 3):  # before an item or "]" (1: right after "[", 3: after an item)
        if c == "]" and count >= lo:
            return (True, (4, count, None))
        if phase == 3:
            return (False, (2, count, _start(item))) if c == "," and count < hi else None
        if count >= hi:
            return None
        inner = _start(item)
    stepped = _step_value(item, inner, c)
    if stepped is None:
        return None
    done, inner = stepped
    return (False, (3, count + 1, None)) if done else (False, (2, count, inner))


def _first_chars(item: Segment) -> set[str]:
    if item[0] == "enum":
        return {e[0] for e in item[1]}
    return {'"'}  # a bounded string


@dataclass(frozen=True)
class CompactObject:
    """A character-level recogniser of one compact JSON object language."""

    segments: tuple[Segment, ...]

    @property
    def start(self) -> State:
        return (0, _start(self.segments[0]))

    def done(self, state: State) -> bool:
        return state[0] >= len(self.segments)

    def step(self, state: State, c: str) -> State | None:
        index, sub = state
        if index >= len(self.segments):
            return None
        stepped = _step_value(self.segments[index], sub, c)
        if stepped is None:
            return None
        done, sub = stepped
        if not done:
            return (index, sub)
        index += 1
        return (index, _start(self.segments[index]) if index < len(self.segments) else None)

    def feed(self, state: State, text: str) -> State | None:
        for c in text:
            next_state = self.step(state, c)
            if next_state is None:
                return None
            state = next_state
        return state

    def accepts(self, text: str) -> bool:
        state = self.feed(self.start, text)
        return state is not None and self.done(state)

    def next_chars(self, state: State) -> set[str] | None:
        """The characters that may come next, when they are few (structure, keys, enum
        values); None inside a bounded string (almost any character may)."""
        index, sub = state
        if index >= len(self.segments):
            return set()
        seg = self.segments[index]
        if self.string_room(state) is not None:
            return None
        kind = seg[0]
        if kind == "lit":
            return {seg[1][sub]}
        if kind == "enum":
            return {e[len(sub)] for e in seg[1] if e.startswith(sub) and len(e) > len(sub)}
        if kind == "str":
            return {'"'}
        phase, count, inner = sub
        item, lo, hi = seg[1], seg[2], seg[3]
        if phase == 0:
            return {"["}
        chars: set[str] = set()
        if phase in (1, 3) and count >= lo:
            chars.add("]")
        if phase == 3 and count < hi:
            chars.add(",")
        if phase == 1 and count < hi:
            chars |= _first_chars(item)
        if phase == 2:
            if item[0] == "enum":
                chars |= {e[len(inner)] for e in item[1] if e.startswith(inner) and len(e) > len(inner)}
            else:
                return None  # inside the item's bounded string
        return chars

    def forced(self, state: State, limit: int = 200) -> str:
        """The text that must come next whatever the model prefers: characters as long as
        exactly one is allowed (the rest of a key, ``":"``, an opening quote, the common
        start of the enum values left)."""
        out: list[str] = []
        while len(out) < limit:
            chars = self.next_chars(state)
            if chars is None or len(chars) != 1:
                break
            (c,) = chars
            next_state = self.step(state, c)
            if next_state is None:
                break
            out.append(c)
            state = next_state
        return "".join(out)

    def string_room(self, state: State) -> int | None:
        """Inside a bounded string (after its opening quote): how many more characters it
        may hold; None elsewhere."""
        index, sub = state
        if index >= len(self.segments):
            return None
        seg = self.segments[index]
        if seg[0] == "str" and sub >= 0:
            return int(seg[2]) - int(sub)
        if seg[0] == "arr" and sub[0] == 2 and seg[1][0] == "str" and sub[2] >= 0:
            return int(seg[1][2]) - int(sub[2])
        return None


class Vocabulary:
    """A tokenizer's tokens as text, indexed for :meth:`allowed` (built once per model)."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = list(texts)
        by_text: dict[str, list[int]] = {}
        for token_id, text in enumerate(texts):
            if text and "\ufffd" not in text:  # a partial UTF-8 sequence spells nothing alone
                by_text.setdefault(text, []).append(token_id)
        self.by_text = by_text
        self.sorted = sorted(by_text)
        # tokens that can only continue a bounded string: no quote, backslash or control
        plain = [(len(t), i) for t, ids in by_text.items() if all(_plain_char(c) for c in t) for i in ids]
        plain.sort()
        self.plain_lengths = [n for n, _ in plain]
        self.plain_ids = [i for _, i in plain]
        self.quoted = [t for t in self.sorted if '"' in t]

    def _walk(self, machine: CompactObject, prefix: str, state: State, lo: int, hi: int, out: list[int]) -> None:
        texts = self.sorted
        j = lo
        if j < hi and texts[j] == prefix:
            if prefix:
                out.extend(self.by_text[prefix])
            j += 1
        depth = len(prefix)
        while j < hi:
            c = texts[j][depth]
            end = bisect.bisect_left(texts, prefix + c + "\U0010ffff", j, hi)
            next_state = machine.step(state, c)
            if next_state is not None:
                self._walk(machine, prefix + c, next_state, j, end, out)
            j = end

    def allowed(self, machine: CompactObject, state: State) -> list[int]:
        """The token ids that may come next (every character of the token's text allowed)."""
        room = machine.string_room(state)
        out: list[int] = []
        if room is None:
            self._walk(machine, "", state, 0, len(self.sorted), out)
            return out
        out.extend(self.plain_ids[: bisect.bisect_right(self.plain_lengths, room)])
        for text in self.quoted:  # the string's end, and what may follow it in the same token
            if machine.feed(state, text) is not None:
                out.extend(self.by_text[text])
        return out


def token_texts(tokenizer: Any) -> list[str]:
    """Every token id's text as decoding writes it."""
    return [str(tokenizer.decode([token_id])) for token_id in range(len(tokenizer))]
