"""Shopify's category attributes and values, merged into a Shopify categories document.

The shared file ``shopify_attributes_2024-04.json`` (Shopify/product-taxonomy release 0.16.0,
MIT, Copyright (c) Shopify) has ``attributes`` (``{"id", "handle", "name", "values": [{"id",
"handle", "name"}]}``) and ``category_attributes`` (category short id → the handles of *all*
its attributes, own and inherited). :func:`merge_shopify_attributes` reproduces each listed
category's list exactly with inheritance: walking down from the root, a category attaches the
attributes of its list that its parent does not have, and excludes
(:attr:`~taxonomy.model.Node.excluded_attributes`) those its parent has but its list lacks
(Shopify's lists are not strictly inherited: e.g. no ``material`` for bird cage dishes).
Categories the file does not list (newer than it) inherit their parent's attributes.
Attributes with a value list are closed; the few without one are open text. Shopify
attributes are multi-valued (a product can be both black and white).

:func:`build_packaged_default` builds the packaged default taxonomy
(``taxonomy/data/shopify_2024-07_with_attributes.json.gz``, see
``scripts/build_default_taxonomy.py``) from the two shared files, with the value synonyms of
:mod:`taxonomy.formats.shopify_synonyms`.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from taxonomy.errors import TaxonomyFormatError
from taxonomy.model import Attribute, AttributeValue, Node, TaxonomyDocument

ATTRIBUTION = (
    "attributes and values: Shopify/product-taxonomy release 0.16.0 (2024-04), "
    "MIT License, Copyright (c) Shopify"
)
_GID_PREFIX = "gid://shopify/TaxonomyCategory/"
#: the merged document's name (the categories file's says "categories (en)")
MERGED_NAME = "Shopify Standard Product Taxonomy"


def _short_id(node: Node) -> str:
    short = node.meta.get("short_id")
    if isinstance(short, str):
        return short
    return node.id.removeprefix(_GID_PREFIX)


def _attribute(raw: Mapping[str, Any]) -> Attribute:
    values = tuple(AttributeValue(id=v["id"], name=v["name"]) for v in raw.get("values") or [])
    return Attribute(
        id=raw["id"], name=raw["name"], cardinality="multi", values=values,
        open_values=not values, meta={"handle": raw["handle"]},
    )


def merge_shopify_attributes(categories: TaxonomyDocument, data: object) -> TaxonomyDocument:
    """``categories`` (a Shopify categories document, e.g. the 2024-07 one) with the attributes
    of ``data`` (the parsed ``shopify_attributes_*.json``) defined, attached and excluded so
    that ``Snapshot.attributes_for`` gives each listed category exactly its listed attributes.

    Categories the attributes file does not list inherit their parent's; attributes already in
    ``categories`` (and the nodes' own attachments) are kept. Raises
    :class:`TaxonomyFormatError` on a malformed file or a handle it does not define.
    """
    if not isinstance(data, Mapping) or not isinstance(data.get("attributes"), list) \
            or not isinstance(data.get("category_attributes"), Mapping):
        raise TaxonomyFormatError(
            'a Shopify attributes file has an "attributes" list and a "category_attributes" object'
        )
    try:
        defined = [_attribute(raw) for raw in data["attributes"]]
    except (ValidationError, KeyError, TypeError) as exc:
        raise TaxonomyFormatError(f"invalid Shopify attribute: {exc}") from exc
    by_handle = {str(a.meta["handle"]): a.id for a in defined}
    listed: dict[str, list[str]] = {}
    for short, handles in data["category_attributes"].items():
        missing = [h for h in handles if h not in by_handle]
        if missing:
            raise TaxonomyFormatError(f"category {short!r} lists undefined attributes {missing[:5]}")
        listed[str(short)] = [by_handle[h] for h in handles]

    by_id = {n.id: n for n in categories.nodes}
    effective: dict[str, list[str]] = {}  # node id → its attributes, as attributes_for folds them

    def has(node_id: str) -> list[str]:
        if node_id not in effective:
            node = by_id[node_id]
            inherited = [] if node.parent is None or node.parent not in by_id else has(node.parent)
            own_list = listed.get(_short_id(node))
            if own_list is None:  # not listed: inherits, plus what the node already attaches
                effective[node_id] = [*inherited, *(a for a in node.attributes if a not in inherited)]
            else:
                wanted = set(own_list) | set(node.attributes)
                kept = [a for a in inherited if a in wanted]
                effective[node_id] = [*kept, *(a for a in (*node.attributes, *own_list) if a not in kept)]
        return effective[node_id]

    nodes = []
    for node in categories.nodes:
        inherited = [] if node.parent is None or node.parent not in by_id else has(node.parent)
        mine = has(node.id)
        own = tuple(dict.fromkeys(a for a in mine if a not in inherited and a not in node.attributes))
        excluded = tuple(
            a for a in inherited if a not in mine and a not in node.excluded_attributes
        )
        changes: dict[str, Any] = {}
        if own:
            changes["attributes"] = (*node.attributes, *own)
        if excluded:
            changes["excluded_attributes"] = (*node.excluded_attributes, *excluded)
        nodes.append(node.model_copy(update=changes) if changes else node)

    existing = {a.id for a in categories.attributes}
    source = "; ".join(s for s in (categories.source, ATTRIBUTION) if s)
    meta = {**categories.meta, "attributes_source": str(data.get("source") or ATTRIBUTION)}
    meta.pop("note", None)  # the categories file's "attributes not included" note is no longer true
    return categories.model_copy(
        update={
            "name": MERGED_NAME,
            "nodes": tuple(nodes),
            "attributes": (*categories.attributes, *(a for a in defined if a.id not in existing)),
            "source": source,
            "meta": meta,
        }
    )


def build_packaged_default(
    categories_path: str | Path, attributes_path: str | Path, out_path: str | Path | None = None
) -> TaxonomyDocument:
    """The Shopify categories file merged with the attributes file, value synonyms added
    (:func:`~taxonomy.formats.shopify_synonyms.add_value_synonyms`); written, gzipped, in our
    JSON format to ``out_path`` when given. The bytes depend only on the two inputs (compact
    JSON in document order, gzip without a timestamp or a file name at a fixed level)."""
    from taxonomy.formats import read_document
    from taxonomy.formats.json_format import dump_json
    from taxonomy.formats.shopify_synonyms import add_value_synonyms
    from taxonomy.snapshot import Snapshot

    categories = read_document(categories_path, "shopify")
    attributes = json.loads(Path(attributes_path).read_text(encoding="utf-8"))
    merged = add_value_synonyms(merge_shopify_attributes(categories, attributes))
    if out_path is not None:
        text = dump_json(Snapshot(merged, version=0), indent=None)
        Path(out_path).write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))
    return merged
