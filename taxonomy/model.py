"""The data model of a taxonomy: category nodes, attributes with their values, the document.

A :class:`TaxonomyDocument` is the plain, serialisable content of one taxonomy version; a
:class:`~taxonomy.snapshot.Snapshot` wraps one with a frozen networkx graph and indexes.
Derived facts (level, path, is_leaf) are computed by the snapshot, never trusted from input.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue


def _check_id(value: str) -> str:
    # ids are compared byte-exactly everywhere: refuse the invisible variants at the door
    if not value:
        raise ValueError("an id must not be empty")
    if value != value.strip():
        raise ValueError(f"id {value!r} has leading or trailing whitespace")
    if any(unicodedata.category(ch) in {"Cc", "Cf"} for ch in value):
        raise ValueError(f"id {value!r} contains control or format characters")
    return value


def _check_name(value: str) -> str:
    if not value.strip():
        raise ValueError("a name must not be empty")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError(f"name {value!r} contains control characters")
    return value


NodeId = Annotated[str, Field(max_length=512), AfterValidator(_check_id)]
Name = Annotated[str, Field(max_length=1000), AfterValidator(_check_name)]
#: attribute values of open-vocabulary sources are free text, sometimes long
ValueId = Annotated[str, Field(max_length=10_000), AfterValidator(_check_id)]
ValueName = Annotated[str, Field(max_length=10_000), AfterValidator(_check_name)]
Cardinality = Literal["single", "multi"]
Meta = dict[str, JsonValue]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class Node(BaseModel):
    """One category. ``level`` is 1 for a root; the snapshot keeps it consistent with ``parent``.

    ``attributes`` lists the attribute ids attached *here*; descendants inherit them.
    ``meta`` keeps source fields we do not interpret (e.g. Shopify ``short_id``): read-only.
    """

    model_config = _FROZEN

    id: NodeId
    name: Name
    parent: NodeId | None = None
    level: int = Field(default=1, ge=1)
    synonyms: tuple[str, ...] = ()
    description: str | None = None
    deprecated: bool = False
    replaced_by: NodeId | None = None
    attributes: tuple[NodeId, ...] = ()
    meta: Meta = Field(default_factory=dict)

    @property
    def active(self) -> bool:
        return not self.deprecated


class AttributeValue(BaseModel):
    model_config = _FROZEN

    id: ValueId
    name: ValueName
    synonyms: tuple[str, ...] = ()


class Attribute(BaseModel):
    """An attribute such as Color: its allowed values and how many a product may take.

    ``open_values`` marks open-vocabulary attributes (any value accepted; ``values`` are
    examples), as published by retailers without an attribute schema.
    """

    model_config = _FROZEN

    id: NodeId
    name: Name
    cardinality: Cardinality = "single"
    values: tuple[AttributeValue, ...] = ()
    open_values: bool = False
    description: str | None = None

    def value(self, value_id: str) -> AttributeValue | None:
        return next((v for v in self.values if v.id == value_id), None)


class TaxonomyDocument(BaseModel):
    """The full content of one taxonomy version, in document (source) order."""

    model_config = _FROZEN

    name: str = ""
    source_version: str | None = Field(default=None, description="the source's own label, e.g. 2024-07")
    source: str | None = None
    nodes: tuple[Node, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    meta: Meta = Field(default_factory=dict)
