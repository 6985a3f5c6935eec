"""Flipkart's category tree with its observed attributes (``flipkart/taxonomy.json``).

Shape: our JSON node schema (``nodes``: ids ``fk:`` + path) plus ``attributes``: ``[{"name",
"n_products", "values": [observed values]}]``, the attribute names seen on ≥ 10 products' spec
tables. Flipkart publishes no attribute schema, so:

* every attribute is open (``open_values=True``): ``values`` are observed examples, not a
  closed list; the attribute id is its name (as the dev set's ``gold_attributes`` name it);
* Flipkart gives no per-category attribute lists, so every attribute is attached at every
  root and applies everywhere (a shoe category offers "Diamond Clarity"): a pipeline should
  rank or filter them, e.g. by the neighbours' attributes;
* cardinality is ``multi`` when at least a fifth of the distinct observed values are
  comma-joined lists ("Men, Women"), ``single`` otherwise (a heuristic; the share is kept in
  ``meta["comma_joined_share"]``, with ``n_products``);
* ``value_type`` is read from the values: ``identifier`` for model numbers/style codes,
  ``number_with_unit`` / ``number`` when most values look like "2.5 g" / "18", ``name`` for
  Brand, ``text`` otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from taxonomy.errors import TaxonomyFormatError
from taxonomy.formats.json_format import parse_json_document
from taxonomy.model import Attribute, AttributeValue, TaxonomyDocument, ValueType

MULTI_SHARE = 0.2
_IDENTIFIER = re.compile(r"\b(model|style)\s+(number|code|id)\b|\b(sku|ean|upc|gtin)\b", re.I)
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
_NUMBER_WITH_UNIT = re.compile(r"^\d+(?:\.\d+)?\s*[^\W\d_]+\.?$")


def _value_type(name: str, values: Sequence[str]) -> ValueType:
    if _IDENTIFIER.search(name):
        return "identifier"
    if name.strip().lower() == "brand":
        return "name"
    if values:
        if sum(bool(_NUMBER.match(v)) for v in values) >= 0.8 * len(values):
            return "number"
        if sum(bool(_NUMBER_WITH_UNIT.match(v)) for v in values) >= 0.8 * len(values):
            return "number_with_unit"
    return "text"


def _attribute(raw: Mapping[str, Any]) -> Attribute:
    name = str(raw["name"])
    values = [str(v) for v in raw.get("values") or []]
    share = sum(", " in v for v in values) / len(values) if values else 0.0
    meta: dict[str, Any] = {"comma_joined_share": round(share, 3)}
    if "n_products" in raw:
        meta["n_products"] = raw["n_products"]
    return Attribute(
        id=name, name=name,
        cardinality="multi" if share >= MULTI_SHARE else "single",
        values=tuple(AttributeValue(id=v, name=v) for v in dict.fromkeys(values)),
        open_values=True,
        value_type=_value_type(name, values),
        meta=meta,
    )


def parse_flipkart(data: object) -> TaxonomyDocument:
    if not isinstance(data, Mapping) or not isinstance(data.get("nodes"), list):
        raise TaxonomyFormatError('a Flipkart taxonomy file has a "nodes" list')
    raw_attributes = data.get("attributes")
    raw_attributes = [] if raw_attributes is None else raw_attributes
    if not isinstance(raw_attributes, list):
        raise TaxonomyFormatError('"attributes" must be a list')
    base = parse_json_document({k: v for k, v in data.items() if k != "attributes"})
    try:
        attributes = tuple(_attribute(raw) for raw in raw_attributes)
    except (ValidationError, KeyError, TypeError) as exc:
        raise TaxonomyFormatError(f"invalid Flipkart attribute: {exc}") from exc
    ids = [a.id for a in attributes]
    if len(set(ids)) != len(ids):
        raise TaxonomyFormatError("an attribute name is listed twice")
    nodes = tuple(
        n.model_copy(update={"attributes": (*n.attributes, *(a for a in ids if a not in n.attributes))})
        if n.parent is None else n
        for n in base.nodes
    )
    return base.model_copy(update={"nodes": nodes, "attributes": attributes})
