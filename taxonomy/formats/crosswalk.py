"""Reading crosswalk files: Shopify's published category mappings, and our own JSON.

Shopify's form (as in ``shared/data/taxonomies/shopify_2024-04_to_google_2021-09-21.json``):
``{"name", "input_taxonomy": "shopify/2024-04", "output_taxonomy": "google/2021-09-21",
"source", "note", "mapping": {"<short id>": ["<target id>", ...]}}``; short ids are the tail of
``gid://shopify/TaxonomyCategory/<short id>`` and are expanded to it. Our own form is the
:class:`~taxonomy.crosswalk.CrosswalkDocument` as JSON (what ``tagsmith crosswalk export`` writes).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from taxonomy.crosswalk import DEFAULT_TAXONOMY, CrosswalkDocument, CrosswalkRow
from taxonomy.errors import TaxonomyFormatError

SHOPIFY_CATEGORY_PREFIX = "gid://shopify/TaxonomyCategory/"


def _taxonomy_label(value: object) -> tuple[str, str | None]:
    """``"google/2021-09-21"`` → ("google", "2021-09-21")."""
    if not isinstance(value, str) or not value.strip():
        raise TaxonomyFormatError("input_taxonomy and output_taxonomy must be strings such as google/2021-09-21")
    name, _, label = value.strip().partition("/")
    return name.lower(), label or None


def parse_crosswalk(
    data: object, *, source_taxonomy: str = DEFAULT_TAXONOMY, target_taxonomy: str | None = None
) -> CrosswalkDocument:
    """A crosswalk document from parsed JSON, in either form. ``target_taxonomy``: the store
    name of the target (default: the name in ``output_taxonomy``, e.g. ``google``)."""
    if not isinstance(data, Mapping):
        raise TaxonomyFormatError("a crosswalk file is a JSON object")
    try:
        if "mapping" in data:
            return _parse_published(data, source_taxonomy, target_taxonomy)
        updates: dict[str, Any] = {}
        if target_taxonomy is not None:
            updates["target_taxonomy"] = target_taxonomy
        return CrosswalkDocument.model_validate({**data, **updates})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TaxonomyFormatError(f"invalid crosswalk: {where}: {first['msg']}") from exc


def _parse_published(
    data: Mapping[str, Any], source_taxonomy: str, target_taxonomy: str | None
) -> CrosswalkDocument:
    mapping = data["mapping"]
    if not isinstance(mapping, Mapping):
        raise TaxonomyFormatError('"mapping" must be an object: source id → [target id, ...]')
    source_name, _ = _taxonomy_label(data.get("input_taxonomy"))
    target_name, _ = _taxonomy_label(data.get("output_taxonomy"))
    shopify = source_name == "shopify"
    rows = []
    for key, targets in mapping.items():
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise TaxonomyFormatError(f"mapping[{key!r}] must be a list of target ids")
        source_id = key if not shopify or key.startswith("gid://") else SHOPIFY_CATEGORY_PREFIX + key
        rows.append(CrosswalkRow(source_id=source_id, target_ids=tuple(dict.fromkeys(targets))))
    return CrosswalkDocument(
        title=str(data.get("name") or ""), source_taxonomy=source_taxonomy,
        source_label=str(data["input_taxonomy"]), target_taxonomy=target_taxonomy or target_name,
        target_label=str(data["output_taxonomy"]),
        source=data.get("source") if isinstance(data.get("source"), str) else None,
        note=data.get("note") if isinstance(data.get("note"), str) else None,
        rows=tuple(rows),
    )


def read_crosswalk(path: str | Path, **kwargs: Any) -> CrosswalkDocument:
    """A crosswalk file (``.gz`` accepted) in either form."""
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TaxonomyFormatError(f"{path.name}: not UTF-8 JSON: {exc}") from exc
    return parse_crosswalk(data, **kwargs)
