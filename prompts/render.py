"""Render the tagging prompt from a versioned template.

Candidates are shown as single letters (A, B, …): one generated token per answer, and a
letter is one token in the tokenizers we ship, so the embedded backend can read the whole
distribution over candidates from a single forward pass.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
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
