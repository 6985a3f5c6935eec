"""The manifest of a fine-tuned model directory (``tagsmith-model.json``).

A fine-tuned model only answers well on the prompt it was trained on, so the manifest
carries that prompt's shape (:class:`PromptProfile`) next to the provenance (base model and
its hash, data hash, taxonomy version, hyper-parameters, validation metrics). The agent
reads the profile from the backend and builds its prompts with it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from prompts import ATTRS_PROMPT_VERSION, PROMPT_VERSION

MANIFEST_FILE = "tagsmith-model.json"
MANIFEST_FORMAT = "tagsmith-model/1"
#: what a fine-tuned model was trained to answer (the manifest's ``task``; absent: category)
CATEGORY_TASK = "category"
ATTRIBUTES_TASK = "attributes"
TASKS = (CATEGORY_TASK, ATTRIBUTES_TASK)


@dataclass(frozen=True, slots=True)
class PromptProfile:
    """How the agent renders the tagging prompt for a model. The defaults are the untuned
    model's; fine-tuning uses a leaner prompt (fewer examples, shorter texts) because
    training cost is linear in prompt tokens on a CPU."""

    max_candidates: int = 8
    max_examples: int = 4
    max_product_chars: int = 400
    max_example_chars: int = 160
    max_label_chars: int = 120
    version: str = PROMPT_VERSION

    @classmethod
    def from_json(cls, data: Any) -> PromptProfile:
        if not isinstance(data, dict):
            raise ValueError("prompt profile: not a JSON object")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True, slots=True)
class AttributePromptProfile:
    """How the attribute prompt (``attrs.v1``, :func:`agent.attributes.llm_step.ask_attributes`)
    was rendered for an attributes model's training data: the agent's own settings at the
    time (the extractor's option cap and description cut, the prompt's size limits, no
    few-shot examples), so that a caller can check it asks the model the same way."""

    version: str = ATTRS_PROMPT_VERSION
    max_product_chars: int = 600
    max_options: int = 40
    description_chars: int = 500
    max_prompt_chars: int = 5200
    neighbours: int = 10
    max_examples: int = 0

    @classmethod
    def from_json(cls, data: Any) -> AttributePromptProfile:
        if not isinstance(data, dict):
            raise ValueError("attribute prompt profile: not a JSON object")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def read_manifest(model_dir: Path) -> dict[str, Any] | None:
    """The manifest of a model directory, or None when it has none (a plain export)."""
    path = Path(model_dir) / MANIFEST_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: not a {MANIFEST_FORMAT} manifest")
    return data


def task_of(manifest: dict[str, Any] | None) -> str:
    """What the model was fine-tuned for: ``category`` (also every manifest written before
    tasks existed, and plain exports) or ``attributes``."""
    task = (manifest or {}).get("task", CATEGORY_TASK)
    if task not in TASKS:
        raise ValueError(f"unknown fine-tuning task {task!r} in the model manifest")
    return str(task)


def profile_of(manifest: dict[str, Any] | None) -> PromptProfile | None:
    """The tagging prompt's shape of a model fine-tuned for categories; None otherwise (an
    attributes model's ``prompt`` is an :class:`AttributePromptProfile`: the tagging step
    prompts such a model like an untuned one)."""
    if manifest is None or "prompt" not in manifest or task_of(manifest) != CATEGORY_TASK:
        return None
    return PromptProfile.from_json(manifest["prompt"])


def attribute_profile_of(manifest: dict[str, Any] | None) -> AttributePromptProfile | None:
    """The attribute prompt's shape of a model fine-tuned for attributes; None otherwise."""
    if manifest is None or "prompt" not in manifest or task_of(manifest) != ATTRIBUTES_TASK:
        return None
    return AttributePromptProfile.from_json(manifest["prompt"])


def blend_weight_of(manifest: dict[str, Any] | None) -> float | None:
    """The LLM's share in the blend with the vote, as fitted on held-out products when the
    model was made (``tagsmith finetune``); None when the manifest has none."""
    if task_of(manifest) != CATEGORY_TASK:
        return None
    blend = (manifest or {}).get("blend")
    if not isinstance(blend, dict) or not isinstance(blend.get("llm_weight"), int | float):
        return None
    weight = float(blend["llm_weight"])
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"blend weight {weight} is not within 0..1")
    return weight


def profile_json(profile: PromptProfile | AttributePromptProfile) -> dict[str, Any]:
    return asdict(profile)
