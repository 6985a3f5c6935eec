"""Models of the crosswalk endpoints; row edits, reports and broken rows are the taxonomy
package's own models (:mod:`taxonomy.crosswalk`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from agent.contract import CrosswalkTag
from taxonomy.crosswalk import (
    BrokenRow,
    CrosswalkDocument,
    CrosswalkReport,
    CrosswalkRow,
    CrosswalkVersionInfo,
    RowEdit,
    StoreName,
)
from taxonomy.formats.crosswalk import PublishedMapping


class CrosswalkSummary(BaseModel):
    name: str
    version: int = Field(description="the crosswalk's current version; also its ETag")
    title: str
    source_taxonomy: str = Field(description="the taxonomy mapped from (default: the tagging taxonomy)")
    source_label: str | None = Field(description="the publisher's label of the source, e.g. shopify/2024-04")
    target_taxonomy: str = Field(description="the taxonomy mapped to, e.g. google")
    target_label: str | None
    source_version: int = Field(description="the source taxonomy version this version was checked against")
    target_version: int = Field(description="the target taxonomy version this version was checked against")
    row_count: int
    created_at: datetime
    author: str | None
    message: str | None
    source: str | None = Field(description="provenance and licence of the published mapping")
    note: str | None


class CrosswalkList(BaseModel):
    items: list[CrosswalkSummary]


class CrosswalkDetail(CrosswalkSummary):
    report: CrosswalkReport = Field(description="checked against the current versions of both taxonomies")


class CrosswalkVersions(BaseModel):
    items: list[CrosswalkVersionInfo]


class RowPage(BaseModel):
    crosswalk_version: int
    items: list[CrosswalkRow]
    total: int
    offset: int
    limit: int


class CrosswalkImportRequest(BaseModel):
    """A published mapping (Shopify's form: ``input_taxonomy``, ``output_taxonomy``,
    ``mapping``) or our own crosswalk document (``target_taxonomy``, ``rows``)."""

    model_config = ConfigDict(extra="forbid")
    crosswalk: PublishedMapping | CrosswalkDocument = Field(description="the mapping document, in either form")
    target_taxonomy: StoreName | None = Field(
        default=None,
        description="store name of the target taxonomy (default: from the document, e.g. google); "
        "it must have been imported (tagsmith crosswalk import-taxonomy)",
    )
    message: str | None = Field(default=None, max_length=2000)


class CrosswalkWriteResult(BaseModel):
    name: str
    version: int = Field(description="the new version (also the ETag)")
    previous_version: int
    report: CrosswalkReport = Field(description="the new version checked against both taxonomies: rows with "
                                    "unknown or deprecated ids are kept and listed here")


class CrosswalkEditRequest(BaseModel):
    """Row edits applied all-or-nothing to the version named by If-Match."""

    model_config = ConfigDict(extra="forbid")
    edits: list[RowEdit] = Field(min_length=1, max_length=1000)
    message: str | None = Field(default=None, max_length=2000)


class NodeRef(BaseModel):
    id: str
    name: str
    path: list[str]
    deprecated: bool


class CounterpartOut(BaseModel):
    """A node of the source taxonomy and its counterpart(s) in the target taxonomy."""

    crosswalk: str
    crosswalk_version: int
    taxonomy: str = Field(description="the target taxonomy")
    version: int = Field(description="the target taxonomy's version")
    node: NodeRef = Field(description="the source node asked about")
    row: list[str] | None = Field(description="the node's own row as stored (null: no row)")
    status: str = Field(description="mapped | ancestor (its nearest mapped ancestor's row) | unmapped")
    source_id: str = Field(description="the node whose row gave the targets")
    targets: list[CrosswalkTag] = Field(description="active target nodes (deprecated targets followed to their successor)")
    reason: str | None = None


class SourcesOut(BaseModel):
    """The source nodes whose rows map to one target node (the reverse view)."""

    crosswalk: str
    crosswalk_version: int
    target: NodeRef
    sources: list[NodeRef]
    unknown_sources: list[str] = Field(description="rows' source ids that are not nodes of the source taxonomy")


class BrokenPage(BaseModel):
    crosswalk: str
    crosswalk_version: int
    checked_source_version: int = Field(description="the source version the crosswalk was last checked against")
    source_version: int = Field(description="the source version the rows were checked against now")
    target_version: int
    counts: dict[str, int] = Field(description="broken rows by reason")
    items: list[BrokenRow]
    total: int
    offset: int
    limit: int
