"""Shopify Standard Product Taxonomy JSON.

Two shapes are read:

* the flat categories file (``{"version", "nodes": [{"id", "short_id", "name", "parent"...}]}``,
  as in ``taxonomy/data/``): our JSON node schema, ``short_id`` kept in ``meta``;
* the upstream ``dist/en/categories.json`` shape (``{"version", "verticals": [{"categories":
  [{"id", "name", "parent_id", "attributes": [...]}]}]}``), optionally with an ``attributes``
  list in the upstream ``attributes.json`` shape (``{"id", "name", "values": [...]}``).
  Shopify attributes are multi-valued; attributes without a known value list are open.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from taxonomy.errors import TaxonomyFormatError
from taxonomy.formats.json_format import parse_json_document
from taxonomy.model import Attribute, AttributeValue, Node, TaxonomyDocument

DEFAULT_NAME = "Shopify Standard Product Taxonomy"


def parse_shopify(data: object) -> TaxonomyDocument:
    if isinstance(data, Mapping) and isinstance(data.get("nodes"), list):
        doc = parse_json_document(data)
        return doc if doc.name else doc.model_copy(update={"name": DEFAULT_NAME})
    if isinstance(data, Mapping) and isinstance(data.get("verticals"), list):
        try:
            return _parse_upstream(data)
        except (ValidationError, KeyError, TypeError) as exc:
            raise TaxonomyFormatError(f"invalid Shopify categories file: {exc}") from exc
    raise TaxonomyFormatError('a Shopify taxonomy file has a "nodes" or a "verticals" list')


def _parse_upstream(data: Mapping[str, Any]) -> TaxonomyDocument:
    raw_categories = [c for v in data["verticals"] for c in v.get("categories", [])]
    parents = {c["id"]: c.get("parent_id") for c in raw_categories}
    listed = {c["id"]: [a["id"] for a in c.get("attributes") or []] for c in raw_categories}

    definitions: dict[str, Attribute] = {}
    for raw in data.get("attributes") or []:
        values = tuple(AttributeValue(id=v["id"], name=v["name"]) for v in raw.get("values") or [])
        definitions[raw["id"]] = Attribute(
            id=raw["id"], name=raw["name"], cardinality="multi", values=values,
            open_values=not values, description=raw.get("description") or None,
        )
    for category in raw_categories:
        for ref in category.get("attributes") or []:
            if ref["id"] not in definitions:
                definitions[ref["id"]] = Attribute(
                    id=ref["id"], name=ref["name"], cardinality="multi", open_values=True,
                    description=ref.get("description") or None,
                )

    nodes = []
    for category in raw_categories:
        # upstream lists inherited attributes on every category: attach each one only where
        # no ancestor already has it, so inheritance (not repetition) carries it down
        inherited: set[str] = set()
        ancestor = parents.get(category["id"])
        while ancestor is not None:
            inherited.update(listed.get(ancestor, []))
            ancestor = parents.get(ancestor)
        own = tuple(a for a in listed[category["id"]] if a not in inherited)
        meta = {k: category[k] for k in ("handle",) if k in category}
        nodes.append(
            Node(id=category["id"], name=category["name"], parent=category.get("parent_id"),
                 attributes=own, meta=meta)
        )
    label = data.get("version")
    return TaxonomyDocument(
        name=DEFAULT_NAME,
        source_version=None if label is None else str(label),
        source="Shopify/product-taxonomy (MIT)",
        nodes=tuple(nodes),
        attributes=tuple(definitions.values()),
    )
