"""The attribute part of the review item's correct form: the chosen category's attributes
(inherited ones included, from the taxonomy snapshot) with their current values, a closed
attribute as a ``<select>`` of its allowed values (``multiple`` when it takes several), an
open one as text (several values: comma-separated).

Field names are ``attr.<attribute id>``; a hidden ``attrs_for`` names the category the fields
were made for (``static/ui.js`` rebuilds them, from :func:`attributes_json`, when the reviewer
picks another category). What the form sends is only a proposal: the feedback service's
validation stays the authority (an off-list value is refused with 422)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent.contract import TagResult
from taxonomy import Attribute, Snapshot

PREFIX = "attr."
#: the most values one open attribute field yields, and the longest value kept
MAX_VALUES = 20
MAX_VALUE_LEN = 500


@dataclass(frozen=True)
class Option:
    id: str
    name: str


@dataclass(frozen=True)
class AttributeField:
    id: str
    name: str
    closed: bool
    multi: bool
    unit: str | None
    options: tuple[Option, ...]  # closed: the allowed (active) values
    selected: tuple[str, ...]  # the current values (value ids for closed attributes)

    @property
    def text(self) -> str:
        """An open attribute's current values, as the text box shows them."""
        return ", ".join(self.selected)


def suggested_values(result: TagResult) -> dict[str, list[str]]:
    """The tagger's values: attribute id -> value ids (closed) or values (open)."""
    return {a.attribute: [v.value_id or v.value for v in a.values] for a in result.attributes}


def _field(attr: Attribute, current: Sequence[str]) -> AttributeField:
    options = tuple(Option(v.id, v.name) for v in attr.active_values()) if attr.closed else ()
    if attr.closed:  # a value given by its name is shown selected too
        by_name = {o.name.casefold(): o.id for o in options}
        current = [v if any(o.id == v for o in options) else by_name.get(v.casefold(), v) for v in current]
    return AttributeField(
        id=attr.id, name=attr.name, closed=attr.closed, multi=attr.cardinality == "multi", unit=attr.unit,
        options=options, selected=tuple(dict.fromkeys(current)),
    )


def attribute_fields(snap: Snapshot, category: str | None, current: Mapping[str, Sequence[str]]) -> list[AttributeField]:
    """The fields of ``category``'s attributes (none for a category not in the taxonomy)."""
    if not category or category not in snap:
        return []
    return [_field(attr, current.get(attr.id, ())) for attr in snap.attributes_for(category)]


def attributes_json(snap: Snapshot, category: str) -> dict[str, Any]:
    """What ``static/ui.js`` builds the fields from (``GET /ui/queue/attributes.json``)."""
    known = category in snap
    return {
        "category": category, "known": known, "leaf": known and snap.is_leaf(category),
        "path": snap.path_text(category, " › ") if known else None,
        "attributes": [
            {"id": f.id, "name": f.name, "closed": f.closed, "multi": f.multi, "unit": f.unit,
             "values": [{"id": o.id, "name": o.name} for o in f.options]}
            for f in attribute_fields(snap, category, {})
        ],
    }


def read_attribute_values(pairs: Sequence[tuple[str, str]], snap: Snapshot) -> dict[str, list[str]]:
    """The form's ``attr.<id>`` fields → attribute id -> values (empty fields left out: the
    attribute has no value). A text field of a multi-valued attribute is split at commas."""
    out: dict[str, list[str]] = {}
    for key, raw in pairs:
        if not key.startswith(PREFIX):
            continue
        attr_id = key[len(PREFIX):]
        attr = snap.attributes.get(attr_id)
        multi_text = attr is not None and not attr.closed and attr.cardinality == "multi"
        values = raw.split(",") if multi_text else [raw]
        kept = [v.strip()[:MAX_VALUE_LEN] for v in values if v.strip()]
        if kept:
            out[attr_id] = list(dict.fromkeys([*out.get(attr_id, []), *kept]))[:MAX_VALUES]
    return out
