"""Render the tagging prompt (and the attribute prompt) from versioned templates.

Candidates are shown as single letters (A, B, …): one generated token per answer, and a
letter is one token in the tokenizers we ship, so the embedded backend can read the whole
distribution over candidates from a single forward pass.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache, lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template
from jinja2.sandbox import SandboxedEnvironment

PROMPT_VERSION = "tag.v1"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
TEMPLATES = Path(__file__).resolve().parent / "templates"

# Our block delimiters, and look-alikes a product text could use to fake the end of its block.
_DELIMITER = re.compile(r"<\s*/?\s*(product|example|system|user|assistant|im_start|im_end)[^>]*>", re.I)
# Any other markup that a chat template or tokenizer may treat as structure: tag-like
# ``<word…>`` (HTML, and special tokens such as SmolLM2's ``<file_sep>`` or Gemma's
# ``<start_of_turn>``, which the engine parses out of the prompt text as control tokens),
# ``<|…|>`` markers (ChatML, Llama 3) and ``[INST]`` (Llama 2, Mistral).
_MARKUP = re.compile(r"</?[A-Za-z_!][^<>]{0,80}>|<\|[^<>]{0,80}?\|>|\[\s*/?\s*INST\s*\]", re.I)
# what is left of an opener (unclosed, or cut by the length cap) loses its ``<``
_OPENER = re.compile(r"<(?=/?[A-Za-z_|!])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SPACES = re.compile(r"\s+")


def sanitize_untrusted(text: str, max_chars: int) -> str:
    """Untrusted text made safe to embed in a delimited block: NFKC-normalised (folds
    full-width look-alikes of ``<``/``>``), control characters, delimiter-like tags and
    other markup (HTML, tokenizer special tokens, chat-turn markers) removed, whitespace
    collapsed, capped in length. No ``<`` directly followed by a name survives, so the
    text can neither close its block nor be read as a control token."""
    text = unicodedata.normalize("NFKC", text)
    text = _CONTROL.sub(" ", text)
    text = _DELIMITER.sub(" ", text)
    text = _MARKUP.sub(" ", text)
    text = _OPENER.sub(" ", text)
    text = _SPACES.sub(" ", text).strip()
    if len(text) > max_chars:
        text = text[: max_chars - 1].rstrip() + "…"
    return text


@dataclass(frozen=True, slots=True)
class CandidateOption:
    letter: str
    tag_id: str
    label: str
    """What the model reads: the node's path text (names, root first)."""


@dataclass(frozen=True, slots=True)
class FewShotExample:
    text: str
    answer: str
    """The example's tag as a candidate letter (only examples whose tag is a candidate are shown)."""


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    system: str
    user: str
    options: tuple[CandidateOption, ...]
    version: str = PROMPT_VERSION

    def letter_to_id(self) -> dict[str, str]:
        return {o.letter: o.tag_id for o in self.options}


@cache
def _templates(version: str) -> tuple[Template, Template]:
    env: Environment = SandboxedEnvironment(
        loader=FileSystemLoader(str(TEMPLATES)),
        undefined=StrictUndefined,
        autoescape=False,  # plain-text prompts; untrusted data is sanitised before rendering
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(f"{version}.system.jinja"), env.get_template(f"{version}.user.jinja")


class PromptBuilder:
    """Builds the tagging prompt; lengths are capped so prompts stay lean on CPU."""

    def __init__(
        self,
        *,
        version: str = PROMPT_VERSION,
        max_product_chars: int = 400,
        max_example_chars: int = 160,
        max_label_chars: int = 120,
    ) -> None:
        self.version = version
        self._max_product = max_product_chars
        self._max_example = max_example_chars
        self._max_label = max_label_chars
        _templates(version)  # fail fast on an unknown version

    def build(
        self,
        product_text: str,
        candidates: Sequence[tuple[str, str]],
        examples: Sequence[tuple[str, str]] = (),
    ) -> RenderedPrompt:
        """``candidates``: (tag id, label) in display order; ``examples``: (text, tag id).

        Examples whose tag is not among the candidates are left out (their answer could
        not be expressed as a letter)."""
        if not candidates:
            raise ValueError("at least one candidate is required")
        if len(candidates) > len(LETTERS):
            raise ValueError(f"at most {len(LETTERS)} candidates can be shown")
        options = tuple(
            CandidateOption(LETTERS[i], tag_id, sanitize_untrusted(label, self._max_label))
            for i, (tag_id, label) in enumerate(candidates)
        )
        letter_of = {o.tag_id: o.letter for o in options}
        shots = [
            FewShotExample(sanitize_untrusted(text, self._max_example), letter_of[tag])
            for text, tag in examples
            if tag in letter_of
        ]
        system_t, user_t = _templates(self.version)
        user = user_t.render(
            examples=shots,
            candidates=options,
            product=sanitize_untrusted(product_text, self._max_product),
        )
        return RenderedPrompt(
            system=system_t.render().strip(), user=user.strip(), options=options, version=self.version
        )


# --- attribute prompts ---------------------------------------------------------------------

ATTRS_PROMPT_VERSION = "attrs.v1"
#: what the model answers for an attribute the text does not give (a list attribute: ``[]``)
NONE_ANSWER = "none"


#: taxonomy names (attributes, values, units) repeat from product to product: sanitise once
_sanitize_name = lru_cache(maxsize=65_536)(sanitize_untrusted)


@dataclass(frozen=True, slots=True)
class AttributeSpec:
    """One attribute to ask about, as the caller has it (not yet sanitised or capped)."""

    attribute_id: str
    name: str
    description: str | None = None
    multi: bool = False
    options: tuple[tuple[str, str], ...] = ()
    """Closed attributes: (value id, value name) in display order; empty: an open attribute."""
    value_type: str = "text"
    unit: str | None = None
    hint: tuple[str, ...] = ()
    """Values already seen in the text or in neighbours, shown as suggestions."""


@dataclass(frozen=True, slots=True)
class AttributeOption:
    name: str
    """What the model reads and answers: the sanitised value name, unique in its attribute."""
    value_id: str


@dataclass(frozen=True, slots=True)
class RenderedAttribute:
    """An attribute as shown: its JSON key and the options the answer may use."""

    key: str
    """The answer's JSON key: the sanitised attribute name, unique in the prompt."""
    attribute_id: str
    multi: bool
    options: tuple[AttributeOption, ...]
    """Empty for an open attribute (its answer is copied from the text)."""
    max_items: int
    description: str
    value_type: str
    unit: str | None
    hint: tuple[str, ...]

    @property
    def open(self) -> bool:
        return not self.options


@dataclass(frozen=True, slots=True)
class RenderedAttributePrompt:
    system: str
    user: str
    attributes: tuple[RenderedAttribute, ...]
    examples_shown: int
    version: str = ATTRS_PROMPT_VERSION


class AttributePromptBuilder:
    """Builds the prompt that asks for all of a product's attributes in one answer.

    Untrusted text (the product, the examples) is sanitised and delimited as in the tagging
    prompt; attribute and value names come from the taxonomy, which may itself be an
    imported file, so they are sanitised too. The whole prompt is kept under
    ``max_prompt_chars`` (SmolLM2 has a 2,048-token context and reads ~3.5-4 characters a
    token): over it, examples are dropped (last first), then option lists are cut (the
    caller's order kept, never below ``min_options``), then descriptions.
    """

    def __init__(
        self,
        *,
        version: str = ATTRS_PROMPT_VERSION,
        max_product_chars: int = 600,
        max_example_chars: int = 200,
        max_options: int = 40,
        min_options: int = 8,
        max_items: int = 3,
        max_name_chars: int = 60,
        max_description_chars: int = 120,
        max_value_chars: int = 60,
        max_hints: int = 5,
        max_prompt_chars: int = 5200,
    ) -> None:
        if max_options < 1 or min_options < 1 or max_items < 1:
            raise ValueError("max_options, min_options and max_items must be at least 1")
        self.version = version
        self._max_product = max_product_chars
        self._max_example = max_example_chars
        self._max_options = max_options
        self._min_options = min(min_options, max_options)
        self._max_items = max_items
        self._max_name = max_name_chars
        self._max_description = max_description_chars
        self._max_value = max_value_chars
        self._max_hints = max_hints
        self._max_prompt = max_prompt_chars
        _templates(version)  # fail fast on an unknown version

    def _attribute(self, spec: AttributeSpec, key: str) -> RenderedAttribute:
        options: list[AttributeOption] = []
        seen: set[str] = {NONE_ANSWER}
        for value_id, raw in spec.options:
            if len(options) >= self._max_options:
                break
            name = _sanitize_name(raw, self._max_name)
            if name.casefold() == NONE_ANSWER:
                name = f"{name} (value)"  # a value called "None" is not the "none" answer
            if not name or name.casefold() in seen:
                continue  # a later value with the same name: the caller's first one is kept
            seen.add(name.casefold())
            options.append(AttributeOption(name, value_id))
        hints = [_sanitize_name(h, self._max_name) for h in spec.hint]
        return RenderedAttribute(
            key=key,
            attribute_id=spec.attribute_id,
            multi=spec.multi,
            options=tuple(options),
            max_items=min(self._max_items, len(options)) if options else self._max_items,
            description=_sanitize_name(spec.description or "", self._max_description),
            value_type=spec.value_type,
            unit=_sanitize_name(spec.unit, 30) if spec.unit else None,
            hint=tuple(dict.fromkeys(h for h in hints if h))[: self._max_hints],
        )

    def _keys(self, specs: Sequence[AttributeSpec]) -> list[str]:
        keys: list[str] = []
        seen: set[str] = set()
        for spec in specs:
            base = _sanitize_name(spec.name, self._max_name) or _sanitize_name(
                spec.attribute_id, self._max_name
            ) or "attribute"
            key, n = base, 2
            while key.casefold() in seen:
                key, n = f"{base} ({n})", n + 1
            seen.add(key.casefold())
            keys.append(key)
        return keys

    def _example_answer(
        self, attributes: Sequence[RenderedAttribute], answer: Mapping[str, Sequence[str]]
    ) -> str:
        """The example's answer in the output format: closed values given by name (or id)
        become their option names (a value not shown counts as not given), open values are
        sanitised and capped; attributes not given are "none" / []."""
        out: dict[str, str | list[str]] = {}
        for a in attributes:
            given = [v for v in answer.get(a.attribute_id, ()) if isinstance(v, str)]
            if a.options:
                by_name = {o.name.casefold(): o.name for o in a.options}
                by_id = {o.value_id: o.name for o in a.options}
                names = [
                    by_id.get(v) or by_name.get(_sanitize_name(v, self._max_name).casefold())
                    for v in given
                ]
                picked = list(dict.fromkeys(n for n in names if n))
            else:
                picked = list(dict.fromkeys(
                    s for s in (sanitize_untrusted(v, self._max_value) for v in given) if s
                ))
            picked = picked[: a.max_items if a.multi else 1]
            out[a.key] = picked if a.multi else (picked[0] if picked else NONE_ANSWER)
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))

    def build(
        self,
        product_text: str,
        category_path: str,
        attributes: Sequence[AttributeSpec],
        examples: Sequence[tuple[str, Mapping[str, Sequence[str]]]] = (),
    ) -> RenderedAttributePrompt:
        """``examples``: (product text, {attribute id: [value names, or ids, or strings]})."""
        if not attributes:
            raise ValueError("at least one attribute is required")
        full = [self._attribute(s, k) for s, k in zip(attributes, self._keys(attributes), strict=True)]
        system_t, user_t = _templates(self.version)
        system = system_t.render().strip()
        product = sanitize_untrusted(product_text, self._max_product)
        category = _sanitize_name(category_path, 300)
        shot_texts = [sanitize_untrusted(text, self._max_example) for text, _ in examples]
        n_shots = len(examples)
        cap = max((len(a.options) for a in full), default=0)
        with_descriptions = True
        while True:
            shown = [
                replace(
                    a,
                    options=a.options[:cap],
                    max_items=min(a.max_items, cap) if a.options else a.max_items,
                    description=a.description if with_descriptions else "",
                )
                for a in full
            ]
            shots = [
                FewShotExample(text, self._example_answer(shown, answer))
                for text, (_, answer) in zip(shot_texts[:n_shots], examples, strict=False)
            ]
            user = user_t.render(
                category=category, attributes=shown, examples=shots, product=product
            ).strip()
            if len(system) + len(user) <= self._max_prompt:
                break
            if n_shots:
                n_shots -= 1
            elif cap > self._min_options:
                cap = max(self._min_options, cap // 2)
            elif with_descriptions:
                with_descriptions = False
            else:
                break  # as small as it gets: the backend refuses it if it does not fit
        return RenderedAttributePrompt(
            system=system, user=user, attributes=tuple(shown), examples_shown=n_shots, version=self.version
        )
