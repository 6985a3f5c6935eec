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
        return cls(ex_id, title, description, tuple(tags), dict(attributes), category_text)


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
