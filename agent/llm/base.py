"""The one LLM interface every backend implements.

Callers hand over chat messages and a JSON schema; the backend must enforce the
schema *during* generation (grammar / structured outputs) and return the raw text,
the parsed JSON when it parses, and per-token log-probabilities where the engine
exposes them. Nothing here trusts the output: the agent validates it afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from agent.llm.manifest import PromptProfile

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token with its log-probability and the engine's top alternatives."""

    token: str
    logprob: float
    top: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Generation:
    text: str
    parsed: Any | None
    """The JSON value when ``text`` parses, else None (never trusted: validate it)."""
    logprobs: tuple[TokenLogprob, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    finish_reason: str | None = None


class LLMError(Exception):
    """Base class of backend errors; carries a one-line, user-facing message."""


class LLMUnavailableError(LLMError):
    """The backend cannot be reached or loaded (server down, model file missing, timeout)."""


class LLMRequestRejectedError(LLMUnavailableError):
    """A server answered the request with a 4xx: the request, not the server, is at fault
    (prompt over the context window, a schema the server refuses…). The server is healthy,
    so an endpoint pool neither ejects it nor sends the same request elsewhere."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class ModelNotFoundError(LLMUnavailableError):
    """The configured model file or directory does not exist."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What a backend knows about the model it runs: one object, so that a wrapper that
    hands on ``info`` forwards every field, including any added later."""

    name: str
    """Short backend name: ``embedded``, ``openai``, ``transformers``, ``fake``…"""
    model: str
    """What runs: a model file path or a served model name."""
    max_concurrency: int = 1
    """How many requests it is worth sending at once (1 for in-process engines)."""
    prompt_profile: PromptProfile | None = None
    """The prompt shape a fine-tuned model was trained on (its manifest); None: the default."""
    blend_weight: float | None = None
    """The LLM's share in the blend with the vote, fitted for this model (its manifest)."""
    scores_options: bool = False
    """The backend is an :class:`OptionScorer` (see :func:`option_scorer`)."""

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {self.max_concurrency}")
        if self.blend_weight is not None and not 0.0 <= self.blend_weight <= 1.0:
            raise ValueError(f"blend weight {self.blend_weight} is not within 0..1")


@runtime_checkable
class LLMBackend(Protocol):
    """Chat completion constrained by a JSON schema."""

    @property
    def info(self) -> ModelInfo:
        """What runs, how to prompt it and what it can do (the one place for it)."""
        ...

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
        """Generate one completion constrained to ``schema``.

        Raises :class:`LLMUnavailableError` when the engine cannot answer; never raises
        for bad *output* (that is the validator's job).
        """
        ...

    def close(self) -> None: ...


@runtime_checkable
class OptionScorer(LLMBackend, Protocol):
    """Backends that can score single-token answer options in one forward pass; they say so
    with ``info.scores_options`` (use :func:`option_scorer`, not ``isinstance``: a wrapper
    has the method whether or not the backend it wraps can score)."""

    def score_options(
        self,
        messages: Sequence[ChatMessage],
        options: Sequence[str],
        *,
        assistant_prefix: str = "",
        continuations: Sequence[str] = (),
    ) -> OptionScores:
        """Probabilities of each option as the next text after ``assistant_prefix``.

        ``continuations``: text that may follow an option in the same token (e.g. ``"]}``),
        so tokens like ``A"`` count towards option ``A``."""
        ...


def option_scorer(llm: LLMBackend | None) -> OptionScorer | None:
    """``llm`` as an :class:`OptionScorer` when its info says it scores options, else None."""
    if llm is None or not llm.info.scores_options:
        return None
    if not isinstance(llm, OptionScorer):
        raise TypeError(f"backend {llm.info.name!r} says it scores options but has no score_options")
    return llm


@dataclass(frozen=True, slots=True)
class OptionScores:
    probs: Mapping[str, float]
    """Renormalised over the options (sums to 1)."""
    mass: float
    """Probability mass the model put on the options before renormalising (0..1)."""
    prompt_tokens: int = 0
    latency_ms: float = 0.0


def option_token_ids(
    tokenize: Callable[[str], Sequence[int]], option: str, continuations: Sequence[str] = ()
) -> list[int]:
    """Single vocabulary tokens that spell ``option``, alone or fused with the start of a
    continuation (``C"`` counts for C): the grammar-valid first tokens of that answer.
    ``tokenize`` turns text into token ids without special tokens (the backends' tokenizers
    differ, the rule does not)."""
    spellings = [option] + [option + c[:n] for c in continuations for n in range(1, len(c) + 1)]
    ids: list[int] = []
    for text in dict.fromkeys(spellings):
        toks = list(tokenize(text))
        if len(toks) == 1 and int(toks[0]) not in ids:
            ids.append(int(toks[0]))
    return ids


def option_scores(raw: Mapping[str, float], *, prompt_tokens: int, latency_ms: float) -> OptionScores:
    """:class:`OptionScores` from each option's probability under the model: renormalised
    over the options (uniform when the model put no mass on any of them)."""
    mass = sum(raw.values())
    probs = {o: p / mass for o, p in raw.items()} if mass > 0 else dict.fromkeys(raw, 1.0 / len(raw))
    return OptionScores(probs=probs, mass=min(mass, 1.0), prompt_tokens=prompt_tokens, latency_ms=latency_ms)


def longest_common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Tokens shared at the start of two prompts: what a KV cache can keep."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def parse_json(text: str) -> Any | None:
    """Parse model output as JSON; None on any failure (output is untrusted)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def tags_schema(allowed_ids: Sequence[str], *, max_items: int = 1) -> dict[str, Any]:
    """The output schema tagsmith uses: ``{"tags": [one or more of allowed_ids]}``.

    Ids are short on purpose: every generated token costs ~7 ms plain and ~25 ms more
    under a grammar on the embedded CPU backend.
    """
    if not allowed_ids:
        raise ValueError("allowed_ids must not be empty")
    return {
        "type": "object",
        "properties": {
            "tags": {
                "type": "array",
                "items": {"type": "string", "enum": list(dict.fromkeys(allowed_ids))},
                "minItems": 1,
                "maxItems": max_items,
            }
        },
        "required": ["tags"],
        "additionalProperties": False,
    }


def object_schema(properties: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """An object schema with exactly ``properties``, all required, in this order, nothing
    else: the shape :func:`agent.llm.grammar.compact_gbnf` compiles without whitespace
    (when each property is an enum, a ``maxLength``-bounded string, or a bounded array of
    those) and that OpenAI-style strict structured outputs accept."""
    if not properties:
        raise ValueError("an object schema needs at least one property")
    return {
        "type": "object",
        "properties": {k: dict(v) for k, v in properties.items()},
        "required": list(properties),
        "additionalProperties": False,
    }


def normalise_logprobs(raw: Any) -> tuple[TokenLogprob, ...]:
    """Normalise OpenAI-style ``logprobs.content`` (both backends emit this shape)."""
    if not raw:
        return ()
    content = raw.get("content") if isinstance(raw, dict) else getattr(raw, "content", None)
    if not content:
        return ()
    result = []
    for item in content:
        get = item.get if isinstance(item, dict) else lambda k, _i=item: getattr(_i, k, None)
        top_raw = get("top_logprobs") or []
        top: dict[str, float] = {}
        for alt in top_raw:
            alt_get = alt.get if isinstance(alt, dict) else lambda k, _a=alt: getattr(_a, k, None)
            top[str(alt_get("token"))] = float(alt_get("logprob") or 0.0)
        result.append(
            TokenLogprob(token=str(get("token")), logprob=float(get("logprob") or 0.0), top=top)
        )
    return tuple(result)
