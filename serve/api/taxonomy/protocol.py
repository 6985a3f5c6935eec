"""Models of the taxonomy endpoints. Edits are the store's own models (:mod:`taxonomy.edits`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from taxonomy import Attribute, Edit, SearchHit, VersionInfo


class TaxonomyInfo(BaseModel):
    version: int = Field(description="the version new tagging requests use; also the ETag")
    name: str
    source_version: str | None
    node_count: int
    active_count: int
    leaf_count: int = Field(description="active leaves: the tags the tagger can return")
    roots: list[str]


class NodeOut(BaseModel):
    id: str
    name: str
    parent: str | None
    level: int
    path: list[str] = Field(description="names, root first")
    is_leaf: bool
    deprecated: bool
    replaced_by: str | None
    synonyms: list[str]
    description: str | None


class NodeDetail(NodeOut):
    children: list[str] = Field(description="active child ids")
    ancestors: list[str] = Field(description="ids, root first")
    attributes: list[str] = Field(description="attribute ids applicable here (own and inherited)")


class AttributeOut(Attribute):
    """An attribute's definition (closed: a value list and ``open_values`` false; open: a
    ``value_type``, optional ``unit`` and ``normalization``) and where it is attached."""

    attached_at: list[str] = Field(description="category ids it is attached to (their descendants inherit it)")


class AttributePage(BaseModel):
    version: int
    category: str | None = Field(description="when asked for one category: its applicable attributes")
    items: list[AttributeOut]
    total: int
    offset: int
    limit: int


class NodePage(BaseModel):
    version: int
    items: list[NodeOut]
    total: int
    offset: int
    limit: int


class SearchResults(BaseModel):
    version: int
    hits: list[SearchHit]


class VersionList(BaseModel):
    items: list[VersionInfo]


class VersionDetail(VersionInfo):
    edits: list[Edit] = Field(description="the edits that made this version (empty for an import)")


class MigrationMap(BaseModel):
    from_version: int
    to_version: int
    mapping: dict[str, str | None] = Field(
        description="old id → the active id its tags move to (null: retired without successor); "
        "ids still active are left out"
    )
    attribute_values: dict[str, dict[str, str | None]] = Field(
        default={},
        description="attribute id → {old value id → the active value its tags move to (null: retired "
        "without successor)}; values still active are left out",
    )


class EditRequest(BaseModel):
    """Edits applied all-or-nothing to the version named by the If-Match header."""

    model_config = ConfigDict(extra="forbid")
    edits: list[Edit] = Field(min_length=1, max_length=1000)
    message: str | None = Field(default=None, max_length=2000, description="why: kept in the version log")


class EditResult(BaseModel):
    version: int = Field(description="the new version (also the ETag)")
    previous_version: int
    changes: dict[str, int] = Field(description="counts of the diff to the previous version")
