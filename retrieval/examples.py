"""Tagged example products: the records the index stores and the agent shows as few-shot examples."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from retrieval.errors import ExampleError
from retrieval.text import DEFAULT_MAX_CHARS, product_text

PACKAGED_EXAMPLES = "examples.jsonl"


@dataclass(frozen=True, slots=True)
class Example:
    """One already-tagged product. ``tags`` are taxonomy node ids (leaves, usually);
    ``category_text`` is the shop's own category text, a strong hint when present."""

    id: str
    title: str
    description: str = ""
    tags: tuple[str, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=dict)
    category_text: str = ""
    attribute_values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Its attribute tags: attribute id -> value ids (closed attributes) or normalized values
    (open ones). Not part of the text the index embeds (that is ``attributes``, the shop's
    own key/values)."""
    attribute_mentions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """The same values as written in its text, when known (attribute id -> strings): how a
    value is spelled in product text, which teaches extraction and normalization."""

    def text(self, max_chars: int = DEFAULT_MAX_CHARS) -> str:
        return product_text(
            self.title,
            self.description,
            attributes=self.attributes,
            breadcrumb=self.category_text,
            max_chars=max_chars,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
        }
        if self.attributes:
            out["attributes"] = dict(self.attributes)
        if self.category_text:
            out["category_text"] = self.category_text
        if self.attribute_values:
            out["attribute_values"] = {k: list(v) for k, v in self.attribute_values.items()}
        if self.attribute_mentions:
            out["attribute_mentions"] = {k: list(v) for k, v in self.attribute_mentions.items()}
        return out

    @classmethod
    def from_json(cls, data: object, where: str = "example") -> Example:
        if not isinstance(data, Mapping):
            raise ExampleError(f"{where}: not a JSON object")
        ex_id, title = data.get("id"), data.get("title")
        if not isinstance(ex_id, str) or not ex_id.strip():
            raise ExampleError(f"{where}: 'id' must be a non-empty string")
        if not isinstance(title, str) or not title.strip():
            raise ExampleError(f"{where} ({ex_id}): 'title' must be a non-empty string")
        description = data.get("description") or ""
        tags = data.get("tags") or ()
        attributes = data.get("attributes") or {}
        category_text = data.get("category_text") or ""
        if not isinstance(description, str) or not isinstance(category_text, str):
            raise ExampleError(f"{where} ({ex_id}): 'description'/'category_text' must be strings")
        if not isinstance(tags, list | tuple) or not all(isinstance(t, str) for t in tags):
            raise ExampleError(f"{where} ({ex_id}): 'tags' must be a list of node ids")
        if not isinstance(attributes, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
        ):
            raise ExampleError(f"{where} ({ex_id}): 'attributes' must map strings to strings")
        values = _attribute_lists(data.get("attribute_values"), f"{where} ({ex_id}): 'attribute_values'")
        mentions = _attribute_lists(data.get("attribute_mentions"), f"{where} ({ex_id}): 'attribute_mentions'")
        return cls(
            ex_id, title, description, tuple(tags), dict(attributes), category_text, values, mentions
        )


def _attribute_lists(raw: object, what: str) -> dict[str, tuple[str, ...]]:
    """``{attribute id: value or [values]}`` as tuples of strings."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ExampleError(f"{what} must map attribute ids to a value or a list of values")
    out: dict[str, tuple[str, ...]] = {}
    for key, value in raw.items():
        items = [value] if isinstance(value, str) else value
        if not isinstance(key, str) or not isinstance(items, list | tuple) or not all(
            isinstance(v, str) for v in items
        ):
            raise ExampleError(f"{what} must map attribute ids to a value or a list of values")
        if items:
            out[key] = tuple(items)
    return out


def read_examples(path: str | Path) -> Iterator[Example]:
    """Examples of a JSONL file (one object a line; blank lines skipped)."""
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ExampleError(f"{path}:{lineno}: invalid JSON: {exc}") from exc
            yield Example.from_json(data, f"{path.name}:{lineno}")


def examples_to_jsonl(examples: Iterable[Example]) -> str:
    return "".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in examples)


def packaged_examples_path() -> Path:
    """The examples shipped with tagsmith, tagged against the packaged Shopify taxonomy."""
    return Path(str(resources.files("retrieval") / "data" / PACKAGED_EXAMPLES))


def packaged_examples() -> list[Example]:
    return list(read_examples(packaged_examples_path()))
