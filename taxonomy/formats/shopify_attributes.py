"""Shopify's category attributes and values, merged into a Shopify categories document.

The shared file ``shopify_attributes_2024-04.json`` (Shopify/product-taxonomy release 0.16.0,
MIT, Copyright (c) Shopify) has ``attributes`` (``{"id", "handle", "name", "values": [{"id",
"handle", "name"}]}``) and ``category_attributes`` (category short id → the handles of *all*
its attributes, own and inherited). :func:`merge_shopify_attributes` attaches each attribute
only at the categories where no ancestor already lists it, so inheritance (not repetition)
carries it down, as :func:`taxonomy.formats.shopify.parse_shopify` does for the upstream
shape. Attributes with a value list are closed; the few without one are open text.
Shopify attributes are multi-valued (a product can be both black and white).

:func:`build_packaged_default` regenerates a default taxonomy file from the two shared files
(it does not replace the packaged one; that is a separate decision, see issue 19).
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
#: node meta key: inherited attribute ids that Shopify does not list for this category
UNLISTED_KEY = "shopify_unlisted_attributes"


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
    """``categories`` (a Shopify categories document, e.g. the packaged 2024-07 one) with the
    attributes of ``data`` (the parsed ``shopify_attributes_*.json``) defined and attached.

    Categories the attributes file does not list keep no attributes of their own (they still
    inherit their ancestors'); attributes already in ``categories`` are kept. Raises
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
    full: dict[str, list[str]] = {n.id: listed.get(_short_id(n), []) for n in categories.nodes}
    nodes = []
    for node in categories.nodes:
        inherited: set[str] = set()
        ancestor = node.parent
        while ancestor is not None and ancestor in by_id:
            inherited.update(full[ancestor])
            ancestor = by_id[ancestor].parent
        own = tuple(a for a in full[node.id] if a not in inherited and a not in node.attributes)
        # Shopify's lists are not strictly inherited: about 1,000 categories lack an attribute
        # of an ancestor's list (e.g. ``material`` on bird cage dishes). Inheritance still
        # gives it to them; the ids are recorded so a later model (an exclusion list) or the
        # pipeline can honour Shopify's list exactly.
        unlisted = sorted(inherited - set(full[node.id])) if _short_id(node) in listed else []
        changes: dict[str, Any] = {}
        if own:
            changes["attributes"] = (*node.attributes, *own)
        if unlisted:
            changes["meta"] = {**node.meta, UNLISTED_KEY: unlisted}
        nodes.append(node.model_copy(update=changes) if changes else node)

    existing = {a.id for a in categories.attributes}
    source = "; ".join(s for s in (categories.source, ATTRIBUTION) if s)
    meta = {**categories.meta, "attributes_source": str(data.get("source") or ATTRIBUTION)}
    meta.pop("note", None)  # the categories file's "attributes not included" note is no longer true
    return categories.model_copy(
        update={
            "nodes": tuple(nodes),
            "attributes": (*categories.attributes, *(a for a in defined if a.id not in existing)),
            "source": source,
            "meta": meta,
        }
    )


def build_packaged_default(
    categories_path: str | Path, attributes_path: str | Path, out_path: str | Path | None = None
) -> TaxonomyDocument:
    """The Shopify categories file merged with the attributes file; written, gzipped, in our JSON
    format to ``out_path`` when given (e.g. a candidate for ``taxonomy/data/``)."""
    from taxonomy.formats import read_document
    from taxonomy.formats.json_format import dump_json
    from taxonomy.snapshot import Snapshot

    categories = read_document(categories_path, "shopify")
    attributes = json.loads(Path(attributes_path).read_text(encoding="utf-8"))
    merged = merge_shopify_attributes(categories, attributes)
    if out_path is not None:
        text = dump_json(Snapshot(merged, version=0), indent=None)
        Path(out_path).write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    return merged
