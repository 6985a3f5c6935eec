"""Versioned prompt templates (Jinja files in ``prompts/templates``) and their rendering.

Product text and retrieved examples are untrusted: they are capped in length, stripped of
anything that looks like our block delimiters, and placed inside delimited blocks that the
instructions declare to be data. The model's answer is constrained to candidate letters
and validated afterwards anyway.
"""

from prompts.render import (
    ATTRS_PROMPT_VERSION,
    LETTERS,
    NONE_ANSWER,
    PROMPT_VERSION,
    AttributeOption,
    AttributePromptBuilder,
    AttributeSpec,
    CandidateOption,
    FewShotExample,
    PromptBuilder,
    RenderedAttribute,
    RenderedAttributePrompt,
    RenderedPrompt,
    sanitize_untrusted,
)

__all__ = [
    "ATTRS_PROMPT_VERSION",
    "LETTERS",
    "NONE_ANSWER",
    "PROMPT_VERSION",
    "AttributeOption",
    "AttributePromptBuilder",
    "AttributeSpec",
    "CandidateOption",
    "FewShotExample",
    "PromptBuilder",
    "RenderedAttribute",
    "RenderedAttributePrompt",
    "RenderedPrompt",
    "sanitize_untrusted",
]
