"""Reading crosswalk files: Shopify's published category mappings, and our own JSON.

Shopify's form (as in ``shared/data/taxonomies/shopify_2024-04_to_google_2021-09-21.json``):
``{"name", "input_taxonomy": "shopify/2024-04", "output_taxonomy": "google/2021-09-21",
"source", "note", "mapping": {"<short id>": ["<target id>", ...]}}``; short ids are the tail of
``gid://shopify/TaxonomyCategory/<short id>`` and are expanded to it. Our own form is the
:class:`~taxonomy.crosswalk.CrosswalkDocument` as JSON.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from taxonomy.crosswalk import DEFAULT_TAXONOMY, CrosswalkDocument, CrosswalkRow
from taxonomy.errors import TaxonomyFormatError
from taxonomy.model import NodeId

SHOPIFY_CATEGORY_PREFIX = "gid://shopify/TaxonomyCategory/"
#: "google/2021-09-21": a store name (any case: it is lower-cased), then the publisher's label
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}(/[^\u0000-\u001f\u007f]{1,200})?$"
TaxonomyLabel = Annotated[str, Field(pattern=LABEL_PATTERN, max_length=265)]


class PublishedMapping(BaseModel):
    """Shopify's published form of a category mapping."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(default="", max_length=1000)
    input_taxonomy: TaxonomyLabel = Field(description="e.g. shopify/2024-04")
    output_taxonomy: TaxonomyLabel = Field(description="e.g. google/2021-09-21")
    source: str | None = Field(default=None, max_length=10_000)
    note: str | None = Field(default=None, max_length=10_000)
    mapping: dict[NodeId, Annotated[list[NodeId], Field(max_length=100)]] = Field(
        description="source id (a Shopify short id is expanded to its gid) → target ids",
        json_schema_extra={"additionalProperties": False},
    )


def from_published(
    published: PublishedMapping, *, source_taxonomy: str = DEFAULT_TAXONOMY, target_taxonomy: str | None = None
) -> CrosswalkDocument:
    source_name = published.input_taxonomy.partition("/")[0].lower()
    target_name = published.output_taxonomy.partition("/")[0].lower()
    shopify = source_name == "shopify"
    rows = []
    for key, targets in published.mapping.items():
        source_id = key if not shopify or key.startswith("gid://") else SHOPIFY_CATEGORY_PREFIX + key
        rows.append(CrosswalkRow(source_id=source_id, target_ids=tuple(dict.fromkeys(targets))))
    return CrosswalkDocument(
        title=published.name, source_taxonomy=source_taxonomy, source_label=published.input_taxonomy,
        target_taxonomy=target_taxonomy or target_name, target_label=published.output_taxonomy,
        source=published.source, note=published.note, rows=tuple(rows),
    )


def parse_crosswalk(
    data: object, *, source_taxonomy: str = DEFAULT_TAXONOMY, target_taxonomy: str | None = None
) -> CrosswalkDocument:
    """A crosswalk document from parsed JSON, in either form. ``target_taxonomy``: the store
    name of the target (default: the name in ``output_taxonomy``, e.g. ``google``)."""
    if not isinstance(data, Mapping):
        raise TaxonomyFormatError("a crosswalk file is a JSON object")
    try:
        if "mapping" in data:
            document = from_published(
                PublishedMapping.model_validate(data), source_taxonomy=source_taxonomy,
                target_taxonomy=target_taxonomy,
            )
        else:
            updates: dict[str, Any] = {}
            if target_taxonomy is not None:
                updates["target_taxonomy"] = target_taxonomy
            document = CrosswalkDocument.model_validate({**data, **updates})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TaxonomyFormatError(f"invalid crosswalk: {where}: {first['msg']}") from exc
    try:
        return document.check_rows()
    except ValueError as exc:
        raise TaxonomyFormatError(f"invalid crosswalk: {exc}") from exc


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
