"""Our own JSON format: a superset of the ``{"nodes": [...]}`` schema of the shared files.

Derived fields (``level``, ``path``, ``is_leaf``, ``children``) are written for readers and
never trusted on import: the snapshot recomputes them (a well-formed ``level`` is kept as a
hint, so that a file whose levels are right needs no correcting copy of each node); fields we
do not interpret are kept in ``meta`` and written back, so export → import is exact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from taxonomy.errors import TaxonomyFormatError
from taxonomy.model import Attribute, AttributeValue, Node, TaxonomyDocument
from taxonomy.snapshot import Snapshot

FORMAT_NAME = "tagsmith-taxonomy"
FORMAT_VERSION = 1

_NODE_FIELDS = (
    "id", "name", "parent", "synonyms", "description", "deprecated", "replaced_by", "attributes",
    "excluded_attributes",
)
_DERIVED_NODE_FIELDS = ("level", "path", "is_leaf", "children")
#: optional attribute fields read as they are (absent in files written before they existed)
_ATTRIBUTE_EXTRA_FIELDS = ("value_type", "unit", "normalization", "deprecated", "meta")
_TOP_FIELDS = ("name", "version", "source", "nodes", "attributes", "format", "format_version")


def parse_json_document(data: object) -> TaxonomyDocument:
    if not isinstance(data, Mapping) or not isinstance(data.get("nodes"), list):
        raise TaxonomyFormatError('a taxonomy JSON document is an object with a "nodes" list')
    nodes = [_parse_node(raw, i) for i, raw in enumerate(data["nodes"])]
    raw_attributes = data.get("attributes") or []
    if not isinstance(raw_attributes, list):
        raise TaxonomyFormatError('"attributes" must be a list')
    attributes = [_parse_attribute(raw, i) for i, raw in enumerate(raw_attributes)]
    label = data.get("version")
    try:
        return TaxonomyDocument(
            name=str(data.get("name") or ""),
            source_version=None if label is None else str(label),
            source=None if data.get("source") is None else str(data["source"]),
            nodes=tuple(nodes),
            attributes=tuple(attributes),
            meta={k: v for k, v in data.items() if k not in _TOP_FIELDS},
        )
    except ValidationError as exc:
        raise TaxonomyFormatError(f"invalid taxonomy document: {exc}") from exc


def _parse_node(raw: object, index: int) -> Node:
    if not isinstance(raw, Mapping):
        raise TaxonomyFormatError(f"node #{index} is not an object")
    fields = {k: raw[k] for k in _NODE_FIELDS if k in raw and raw[k] is not None}
    level = raw.get("level")
    if type(level) is int and level >= 1:
        fields["level"] = level  # a hint only: Snapshot corrects a wrong one
    meta = {k: v for k, v in raw.items() if k not in _NODE_FIELDS and k not in _DERIVED_NODE_FIELDS}
    try:
        return Node.model_validate({**fields, "meta": meta})
    except ValidationError as exc:
        raise TaxonomyFormatError(f"node #{index} ({raw.get('id')!r}) is invalid: {exc}") from exc


def _parse_attribute(raw: object, index: int) -> Attribute:
    if not isinstance(raw, Mapping) or ("name" not in raw and "id" not in raw):
        raise TaxonomyFormatError(f"attribute #{index} needs an id or a name")
    values = []
    for value in raw.get("values") or []:
        # plain strings are accepted: retailer attribute lists are often just observed values
        values.append({"id": value, "name": value} if isinstance(value, str) else value)
    try:
        return Attribute.model_validate(
            {
                "id": raw.get("id", raw.get("name")),
                "name": raw.get("name", raw.get("id")),
                "cardinality": raw.get("cardinality", "single"),
                "values": [AttributeValue.model_validate(v) for v in values],
                "open_values": raw.get("open_values", False),
                "description": raw.get("description"),
                **{k: raw[k] for k in _ATTRIBUTE_EXTRA_FIELDS if k in raw and raw[k] is not None},
            }
        )
    except ValidationError as exc:
        raise TaxonomyFormatError(f"attribute #{index} is invalid: {exc}") from exc


def document_to_json_obj(snapshot: Snapshot) -> dict[str, Any]:
    doc = snapshot.document
    nodes = []
    for node in doc.nodes:
        out: dict[str, Any] = {**node.meta, "id": node.id, "name": node.name, "parent": node.parent}
        out.update(level=node.level, path=snapshot.path_text(node.id), is_leaf=snapshot.is_leaf(node.id))
        # defaults are left out: the file stays close to the shared node schema
        if node.synonyms:
            out["synonyms"] = list(node.synonyms)
        if node.description is not None:
            out["description"] = node.description
        if node.deprecated:
            out["deprecated"] = True
        if node.replaced_by is not None:
            out["replaced_by"] = node.replaced_by
        if node.attributes:
            out["attributes"] = list(node.attributes)
        if node.excluded_attributes:
            out["excluded_attributes"] = list(node.excluded_attributes)
        nodes.append(out)
    return {
        **doc.meta,
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "name": doc.name,
        "version": doc.source_version,
        "source": doc.source,
        "attributes": [a.model_dump(mode="json", exclude_defaults=True) for a in doc.attributes],
        "nodes": nodes,
    }


def dump_json(snapshot: Snapshot, *, indent: int | None = 1) -> str:
    return json.dumps(document_to_json_obj(snapshot), ensure_ascii=False, indent=indent) + "\n"
