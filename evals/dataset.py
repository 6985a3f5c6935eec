"""Eval datasets: JSONL, one labelled product a line, validated with line numbers.

Format (one object a line; blank lines are skipped)::

    {"id": "p1", "title": "...", "description": "...", "gold_tags": ["L1", "L2", "L3"],
     "gold_attributes": [{"attribute": "color", "value": "red"}],      # optional
     "category_text": "shop > breadcrumb", "attributes": {"k": "v"}}   # optional inputs

``gold_tags`` are node ids of the eval taxonomy; for hierarchical labels the full path,
root first. MWPD's records (``extra.category_text``) are read as they are published.
The same files serve as the example pool (``--examples``): each record becomes a tagged
example whose tags are its gold leaves (the gold nodes that are no other gold node's
ancestor).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.contract import Product
from evals.records import error_list
from retrieval import Example
from taxonomy import Snapshot


class DatasetError(ValueError):
    """A dataset file cannot be used; the message lists the bad lines."""


class GoldAttribute(BaseModel):
    attribute: str = Field(min_length=1)
    value: str


class ProductRecord(BaseModel):
    """The product part of a dataset record (category and attribute datasets alike)."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=256)
    title: str = ""
    description: str = ""
    category_text: str = ""
    attributes: dict[str, str] = Field(default_factory=dict)

    @field_validator("title", "description", "category_text", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value

    def product(self) -> Product:
        """The tagger's input: text fields clipped to the contract's limits."""
        return Product(
            id=self.id,
            title=(self.title.strip() or self.description.strip()[:200] or "-")[:1000],
            description=self.description[:20000],
            attributes={k[:100]: v[:1000] for k, v in list(self.attributes.items())[:50]},
            category_text=self.category_text[:1000],
        )


class DatasetItem(ProductRecord):
    gold_tags: list[str] = Field(min_length=1)
    gold_attributes: list[GoldAttribute] | None = None

    def gold_leaves(self, snapshot: Snapshot | None = None) -> tuple[str, ...]:
        """Gold nodes that are not an ancestor of another gold node (the path's last id)."""
        if snapshot is None:
            return (self.gold_tags[-1],)
        ancestors = {a for tag in self.gold_tags if tag in snapshot for a in snapshot.ancestors(tag)}
        return tuple(t for t in dict.fromkeys(self.gold_tags) if t not in ancestors)

    def example(self, snapshot: Snapshot | None = None) -> Example:
        return Example(
            id=self.id,
            title=self.title or "-",
            description=self.description,
            tags=self.gold_leaves(snapshot),
            attributes=self.attributes,
            category_text=self.category_text,
        )


def _normalise(raw: dict[str, Any]) -> dict[str, Any]:
    extra = raw.get("extra")
    if isinstance(extra, dict) and not raw.get("category_text") and extra.get("category_text"):
        raw = {**raw, "category_text": extra["category_text"]}
    return raw


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=_Identified)


def raise_problems(what: str, problems: Sequence[str], kind: str) -> None:
    """Raise :class:`DatasetError` listing ``problems`` (nothing when there are none)."""
    if problems:
        raise DatasetError(f"{what}: {len(problems)} {kind}:{error_list(problems)}")


def read_items(
    path: str | Path, parse: Callable[[dict[str, Any]], T], *, limit: int | None = None,
    keep: Callable[[T], bool] = lambda item: True,
) -> list[T]:
    """The items of a JSONL file, ``parse`` making one of each object line (blank lines
    skipped), those ``keep`` accepts up to ``limit`` of them (all when None); raises
    :class:`DatasetError` naming every bad line (invalid JSON, what ``parse`` refuses with a
    ValueError or pydantic's ValidationError, duplicate ids)."""
    path = Path(path)
    items: list[T] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with fh:
        for lineno, line in enumerate(fh, 1):
            if limit is not None and len(items) >= limit:
                break
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                if not isinstance(raw, dict):
                    raise ValueError("not a JSON object")
                item = parse(raw)
            except json.JSONDecodeError as exc:
                errors.append(f"line {lineno}: invalid JSON ({exc.msg})")
                continue
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "record"
                errors.append(f"line {lineno}: {where}: {first['msg']}")
                continue
            except ValueError as exc:
                errors.append(f"line {lineno}: {exc}")
                continue
            if item.id in seen:
                errors.append(f"line {lineno}: duplicate id {item.id!r} (first on line {seen[item.id]})")
                continue
            seen[item.id] = lineno
            if keep(item):
                items.append(item)
    raise_problems(str(path), errors, "bad line(s)")
    return items


def load_dataset(path: str | Path, *, limit: int | None = None) -> list[DatasetItem]:
    """The first ``limit`` items of ``path`` (all when None); raises :class:`DatasetError`
    naming every bad line (invalid JSON, missing or wrong fields, duplicate ids)."""
    items = read_items(path, lambda raw: DatasetItem.model_validate(_normalise(raw)), limit=limit)
    if not items:
        raise DatasetError(f"{path}: no items")
    return items


def check_against_taxonomy(items: Sequence[DatasetItem], snapshot: Snapshot, what: str) -> None:
    """Every gold tag must be a node of the eval taxonomy: a typo would score as an error."""
    unknown = sorted({t for it in items for t in it.gold_tags if t not in snapshot})
    if unknown:
        raise DatasetError(
            f"{what}: {len(unknown)} gold tag id(s) are not in the taxonomy, e.g. {', '.join(unknown[:5])}"
        )


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
