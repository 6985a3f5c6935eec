"""Attribute eval datasets: products with gold attribute values, validated with line numbers.

Two record shapes are read as they are published (one JSON object a line, blank lines
skipped):

* WDC-PAVE (``../shared/data/wdc-pave/``)::

    {"id", "title", "description", "category": "Jewelry",
     "attributes_asked": ["Brand", "Metal Type", ...],
     "gold_attributes": {"Brand": ["WATERFORD"]},                 # normalized; alternatives
     "gold_attributes_extracted": {"Brand": ["Waterford"]}}       # as written; optional

  The category is given (a node id of the eval taxonomy) and only the attributes asked are
  scored; an asked attribute absent from ``gold_attributes`` has no value in the offer.

* Flipkart (``../shared/data/flipkart/``): ``gold_tags`` (the category path) and
  ``gold_attributes`` as a list of ``{"attribute", "value"}`` rows from the shop's spec
  table. No category is given (the tagger chooses it) and no attribute list is asked (all
  the chosen category's attributes are tagged); a gold value "NA"/"N/A" (the spec table's
  "not applicable") is read as no value.

A record with neither ``attributes_asked`` nor any gold attribute has nothing to score and
is skipped (Flipkart dev: 2,544 of 3,023 records); ``limit`` counts the records kept.

The same files serve as the example pool (``--examples``): each record becomes an
:class:`~retrieval.Example` tagged with its category, whose ``attribute_values`` (normalized
gold values) and ``attribute_mentions`` (values as written) are keyed by the eval
taxonomy's attribute ids, as the attribute extractor learns from them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from evals.dataset import DatasetError, ProductRecord, raise_problems, read_items
from retrieval import Example
from taxonomy import Snapshot
from taxonomy.model import Attribute

#: gold values that mean "no value" in spec-table data (compared case-insensitively)
NOT_APPLICABLE = frozenset({"", "na", "n/a"})


def _text(value: Any) -> str:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value  # type: ignore[no-any-return]


def _gold_map(raw: Any, *, drop_na: bool) -> dict[str, list[str]]:
    """``{name: [values]}`` from a mapping (name → value or values) or a list of
    ``{"attribute", "value"}`` rows (repeated names: alternatives, in order)."""
    out: dict[str, list[str]] = {}
    if raw is None:
        return out
    if isinstance(raw, Mapping):
        pairs: Iterable[tuple[Any, Any]] = (
            (k, v) for k, vs in raw.items() for v in ([vs] if isinstance(vs, str | int | float) else (vs or []))
        )
    elif isinstance(raw, list):
        rows = []
        for row in raw:
            if not isinstance(row, Mapping) or "attribute" not in row or "value" not in row:
                raise ValueError('gold attribute rows are {"attribute", "value"} objects')
            rows.append((row["attribute"], row["value"]))
        pairs = rows
    else:
        raise ValueError("gold attributes must be an object or a list of rows")
    for name, value in pairs:
        name, value = _text(name), _text(value)
        if not isinstance(name, str) or not name.strip() or not isinstance(value, str):
            raise ValueError("gold attribute names and values must be strings")
        if drop_na and " ".join(value.lower().split()) in NOT_APPLICABLE:
            continue
        values = out.setdefault(name, [])
        if value not in values:
            values.append(value)
    return {k: v for k, v in out.items() if v or not drop_na}


class AttrItem(ProductRecord):
    """One product of an attribute dataset (see the module docstring)."""

    category: str | None = None
    attributes_asked: list[str] | None = None
    gold_attributes: dict[str, list[str]] = Field(default_factory=dict)
    gold_attributes_extracted: dict[str, list[str]] | None = None
    gold_tags: list[str] = Field(default_factory=list)

    @field_validator("category", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("attributes", mode="before")
    @classmethod
    def _shop_attributes(cls, value: Any) -> Any:
        # WDC/Flipkart records carry no shop key/values; anything not a str→str map is ignored
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            return {}
        return value

    @property
    def scoreable(self) -> bool:
        return self.attributes_asked is not None or bool(self.gold_attributes)

    def gold_category(self, snapshot: Snapshot) -> str | None:
        """The given category, else the deepest gold tag (a leaf of the path)."""
        if self.category is not None:
            return self.category
        ancestors = {a for tag in self.gold_tags if tag in snapshot for a in snapshot.ancestors(tag)}
        leaves = [t for t in dict.fromkeys(self.gold_tags) if t not in ancestors]
        return leaves[-1] if leaves else None

    def breakdown_category(self, snapshot: Snapshot) -> str:
        """The group this item is reported under: the given category, else the root of its
        gold path (a 1,000-leaf tree would give one row per item otherwise)."""
        if self.category is not None:
            return self.category
        leaf = self.gold_category(snapshot)
        if leaf is not None and leaf in snapshot:
            return snapshot.path(leaf)[0]
        return "<unknown>"

    def asked_ids(self, snapshot: Snapshot, category: str) -> list[str]:
        """The ids of the asked attributes among ``category``'s (names matched folded)."""
        if self.attributes_asked is None:
            return []
        by_name = attribute_names(snapshot, category)
        return [by_name[_fold(n)].id for n in self.attributes_asked if _fold(n) in by_name]

    def example(self, snapshot: Snapshot) -> Example | None:
        """This record as a tagged example (None when it has no category the snapshot knows)."""
        category = self.gold_category(snapshot)
        if category is None or category not in snapshot:
            return None
        by_name = attribute_names(snapshot, category)
        values = {by_name[_fold(k)].id: tuple(v) for k, v in self.gold_attributes.items() if _fold(k) in by_name and v}
        mentions = {by_name[_fold(k)].id: tuple(v) for k, v in (self.gold_attributes_extracted or {}).items()
                    if _fold(k) in by_name and v}
        return Example(
            id=self.id, title=self.title.strip() or "-", description=self.description, tags=(category,),
            attributes=self.attributes, category_text=self.category_text,
            attribute_values=values, attribute_mentions=mentions,
        )


def _fold(name: str) -> str:
    return " ".join(name.casefold().split())


def attribute_names(snapshot: Snapshot, category: str) -> dict[str, Attribute]:
    """The category's active attributes by folded name (the first wins on a clash)."""
    out: dict[str, Attribute] = {}
    for attr in snapshot.attributes_for(category):
        if attr.active:
            out.setdefault(_fold(attr.name), attr)
    return out


def _item(raw: dict[str, Any]) -> AttrItem:
    drop_na = "attributes_asked" not in raw  # spec-table data: "NA" is no value
    raw = dict(raw)
    raw["gold_attributes"] = _gold_map(raw.get("gold_attributes"), drop_na=drop_na)
    if raw.get("gold_attributes_extracted") is not None:
        raw["gold_attributes_extracted"] = _gold_map(raw["gold_attributes_extracted"], drop_na=drop_na)
    extra = raw.get("extra")
    if isinstance(extra, Mapping) and not raw.get("category_text") and isinstance(extra.get("category_text"), str):
        raw["category_text"] = extra["category_text"]
    return AttrItem.model_validate(raw)


def load_attr_dataset(
    path: str | Path, *, limit: int | None = None, keep_unscoreable: bool = False
) -> list[AttrItem]:
    """The first ``limit`` scoreable items of ``path`` (all when None; every item when
    ``keep_unscoreable``, as for an example pool); raises :class:`DatasetError` naming every
    bad line (invalid JSON, wrong fields, duplicate ids)."""
    items = read_items(path, _item, limit=limit, keep=lambda item: keep_unscoreable or item.scoreable)
    if not items:
        raise DatasetError(f"{path}: no items with attributes to score (attributes_asked or gold_attributes)")
    return items


def check_attr_items(items: Sequence[AttrItem], snapshot: Snapshot, what: str) -> None:
    """Every given category must be a node of the eval taxonomy and every asked attribute
    one of its attributes: a typo would silently score as a miss."""
    problems: list[str] = []
    for it in items:
        if it.category is not None:
            if it.category not in snapshot:
                problems.append(f"{it.id}: category {it.category!r} is not in the taxonomy")
                continue
            known = attribute_names(snapshot, it.category)
            missing = [n for n in it.attributes_asked or () if _fold(n) not in known]
            if missing:
                problems.append(f"{it.id}: {it.category!r} has no attribute {', '.join(map(repr, missing[:3]))}")
        elif it.attributes_asked is not None and not it.gold_tags:
            problems.append(f"{it.id}: attributes_asked without a category")
    raise_problems(what, problems, "item(s) do not fit the taxonomy")


def load_attr_examples(path: str | Path, snapshot: Snapshot, *, exclude: Iterable[str] = ()) -> list[Example]:
    """The example pool: every record of ``path`` whose category the snapshot knows, as an
    example; ids in ``exclude`` (the eval items) are left out, so no item retrieves itself."""
    banned = set(exclude)
    out = []
    for item in load_attr_dataset(path, keep_unscoreable=True):
        if item.id in banned:
            continue
        ex = item.example(snapshot)
        if ex is not None:
            out.append(ex)
    if not out:
        raise DatasetError(f"{path}: no example has a category of the taxonomy")
    return out
