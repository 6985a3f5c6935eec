"""Crosswalks: a mapping from the nodes of one taxonomy to the nodes of another.

A :class:`CrosswalkDocument` is one version of a crosswalk: which taxonomy it maps from and to
(the stores' names and the published labels, e.g. ``shopify/2024-04`` → ``google/2021-09-21``),
its rows (source id → target ids; an empty list says "no counterpart"), and where it came
from. :class:`Crosswalk` indexes one stored version for lookups; the functions here check it
against both taxonomies (:func:`validate_crosswalk`), find the rows a taxonomy edit broke
(:func:`broken_rows`) and translate a tag (:meth:`Crosswalk.counterpart`). Storage is
:mod:`taxonomy.crosswalk_store`; the published Shopify mapping is read by
:mod:`taxonomy.formats.crosswalk`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import cached_property
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from taxonomy.model import Meta, NodeId
from taxonomy.snapshot import Snapshot

#: the name of the tagging taxonomy (the main store) as a crosswalk's source or target
DEFAULT_TAXONOMY = "default"
#: crosswalk and taxonomy names: they become file names and URL path segments
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
NAME_HELP = "lower-case letters, digits, '-' and '_', at most 64, starting with a letter or digit"

_FROZEN = ConfigDict(frozen=True, extra="forbid")


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):  # fullmatch: "$" alone would let a trailing newline through
        raise ValueError(f"invalid name {name!r}: {NAME_HELP}")
    return name


#: a crosswalk or taxonomy name, as the JSON Schema says it and as it is enforced
StoreName = Annotated[str, Field(pattern=NAME_RE.pattern, max_length=64), AfterValidator(check_name)]


class CrosswalkRow(BaseModel):
    model_config = _FROZEN

    source_id: NodeId
    target_ids: tuple[NodeId, ...] = Field(
        default=(), max_length=100, description="counterparts in the target taxonomy; empty: none"
    )


class CrosswalkDocument(BaseModel):
    """One version of a crosswalk's content."""

    model_config = _FROZEN

    title: str = ""
    source_taxonomy: StoreName = Field(default=DEFAULT_TAXONOMY, description="store name of the source taxonomy")
    source_label: str | None = Field(default=None, description="the publisher's label, e.g. shopify/2024-04")
    target_taxonomy: StoreName = Field(description="store name of the target taxonomy, e.g. google")
    target_label: str | None = Field(default=None, description="the publisher's label, e.g. google/2021-09-21")
    source: str | None = Field(default=None, description="provenance: where the mapping was published, licence")
    note: str | None = None
    rows: tuple[CrosswalkRow, ...] = Field(default=(), description="one per source id")
    meta: Meta = Field(default_factory=dict)

    def check_rows(self) -> CrosswalkDocument:
        """Itself, when each source id has one row; ValueError otherwise (checked on import:
        a schema cannot say it, so the model accepts the document and the import refuses it)."""
        seen: set[str] = set()
        for row in self.rows:
            if row.source_id in seen:
                raise ValueError(f"source id {row.source_id!r} has two rows")
            seen.add(row.source_id)
        return self


class CrosswalkVersionInfo(BaseModel):
    name: str
    version: int
    kind: Literal["import", "edit"]
    created_at: datetime
    author: str | None
    message: str | None
    source_version: int = Field(description="the source taxonomy's store version it was checked against")
    target_version: int = Field(description="the target taxonomy's store version it was checked against")
    row_count: int


class Crosswalk:
    """One stored version of a crosswalk, indexed for lookups (immutable)."""

    def __init__(self, info: CrosswalkVersionInfo, document: CrosswalkDocument) -> None:
        self.info = info
        self.document = document
        self.rows: dict[str, CrosswalkRow] = {r.source_id: r for r in document.rows}

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def version(self) -> int:
        return self.info.version

    @cached_property
    def by_target(self) -> Mapping[str, tuple[str, ...]]:
        """target id → the source ids mapped to it (reverse lookups, for an editor's view)."""
        out: dict[str, list[str]] = {}
        for row in self.document.rows:
            for target in row.target_ids:
                out.setdefault(target, []).append(row.source_id)
        return {k: tuple(v) for k, v in out.items()}

    def counterpart(
        self, source_id: str, source: Snapshot, target: Snapshot, *, fallback: bool = True
    ) -> Counterpart:
        """Where ``source_id`` lands in ``target``: its own row's targets that are nodes of
        ``target`` (deprecated ones followed to their successor), else, with ``fallback``,
        those of its nearest ancestor that has some (``status="ancestor"``), else unmapped."""
        targets = self._valid_targets(source_id, target)
        if targets:
            return Counterpart(status="mapped", source_id=source_id, target_ids=targets)
        if fallback and source_id in source:
            for ancestor in reversed(source.ancestors(source_id)):
                targets = self._valid_targets(ancestor, target)
                if targets:
                    return Counterpart(status="ancestor", source_id=ancestor, target_ids=targets)
        row = self.rows.get(source_id)
        reason = (
            "no row for this node" if row is None
            else "the row maps to no node" if not row.target_ids
            else "none of the row's targets is an active node of the target taxonomy"
        )
        return Counterpart(status="unmapped", source_id=source_id, target_ids=(), reason=reason)

    def _valid_targets(self, source_id: str, target: Snapshot) -> tuple[str, ...]:
        row = self.rows.get(source_id)
        if row is None:
            return ()
        out: list[str] = []
        for target_id in row.target_ids:
            resolved = target.resolve(target_id)  # None: unknown, or retired without successor
            if resolved is not None and resolved not in out:
                out.append(resolved)
        return tuple(out)


class Counterpart(BaseModel):
    model_config = _FROZEN

    status: Literal["mapped", "unmapped", "ancestor"]
    source_id: str = Field(description="the source node whose row was used (an ancestor for status=ancestor)")
    target_ids: tuple[str, ...]
    reason: str | None = Field(default=None, description="why unmapped")


class TargetProblem(BaseModel):
    source_id: str
    target_id: str


class CrosswalkReport(BaseModel):
    """A crosswalk checked against both taxonomies. Rows are never dropped for a problem:
    they are kept and listed here (a later version of either taxonomy may resolve them)."""

    rows: int
    mapped: int = Field(description="rows with at least one target that is an active target node")
    empty: int = Field(description="rows that say the node has no counterpart")
    unknown_source: list[str] = Field(description="source ids that are not nodes of the source taxonomy")
    deprecated_source: list[str] = Field(description="source ids of deprecated source nodes")
    unknown_target: list[TargetProblem] = Field(description="target ids that are not nodes of the target taxonomy")
    deprecated_target: list[TargetProblem] = Field(description="target ids of deprecated target nodes")
    source_version: int
    target_version: int
    uncovered_leaves: int = Field(description="active source leaves with no row of their own")

    def summary(self) -> dict[str, int]:
        return {
            "rows": self.rows, "mapped": self.mapped, "empty": self.empty,
            "unknown_source": len(self.unknown_source), "deprecated_source": len(self.deprecated_source),
            "unknown_target": len(self.unknown_target), "deprecated_target": len(self.deprecated_target),
            "uncovered_leaves": self.uncovered_leaves,
        }


def validate_crosswalk(rows: Iterable[CrosswalkRow], source: Snapshot, target: Snapshot) -> CrosswalkReport:
    rows = list(rows)
    unknown_source = [r.source_id for r in rows if r.source_id not in source]
    deprecated_source = [r.source_id for r in rows if r.source_id in source and source.node(r.source_id).deprecated]
    unknown_target: list[TargetProblem] = []
    deprecated_target: list[TargetProblem] = []
    mapped = 0
    for row in rows:
        good = False
        for target_id in row.target_ids:
            node = target.get(target_id)
            if node is None:
                unknown_target.append(TargetProblem(source_id=row.source_id, target_id=target_id))
            elif node.deprecated:
                deprecated_target.append(TargetProblem(source_id=row.source_id, target_id=target_id))
            else:
                good = True
        mapped += good
    covered = {r.source_id for r in rows}
    return CrosswalkReport(
        rows=len(rows), mapped=mapped, empty=sum(1 for r in rows if not r.target_ids),
        unknown_source=unknown_source, deprecated_source=deprecated_source,
        unknown_target=unknown_target, deprecated_target=deprecated_target,
        source_version=source.version, target_version=target.version,
        uncovered_leaves=sum(1 for leaf in source.active_leaf_ids if leaf not in covered),
    )


BrokenReason = Literal["removed", "deprecated", "moved", "unknown_source", "target_unknown", "target_deprecated"]


class BrokenRow(BaseModel):
    source_id: str
    target_ids: list[str]
    reason: BrokenReason = Field(
        description="removed / deprecated (merged or retired) / moved (new parent: check the "
        "mapping still fits) since the version the crosswalk was checked against; "
        "unknown_source: never a node of that version either (e.g. a row of an older release); "
        "target_unknown / target_deprecated: a target id is not an active target node"
    )
    suggestion: str | None = Field(
        default=None,
        description="source side: the active id the node's tags migrate to (merges, replacements); "
        "target side: the target's successor",
    )
    detail: str | None = None


def broken_rows(
    crosswalk: Crosswalk, base: Snapshot | None, source: Snapshot, target: Snapshot
) -> list[BrokenRow]:
    """Rows that ``source`` (a version of the source taxonomy) or ``target`` breaks, compared
    with ``base``, the source version the crosswalk was checked against (None: unknown, then
    nothing is reported as moved and migrations are not followed from it)."""
    out: list[BrokenRow] = []
    for row in crosswalk.document.rows:
        sid, targets = row.source_id, list(row.target_ids)
        node = source.get(sid)
        known_before = base is not None and sid in base
        if node is None:
            if known_before:
                out.append(BrokenRow(source_id=sid, target_ids=targets, reason="removed",
                                     suggestion=source.resolve(sid)))
            else:
                out.append(BrokenRow(source_id=sid, target_ids=targets, reason="unknown_source",
                                     detail=f"not a node of source version {source.version}"))
        elif node.deprecated:
            successor = source.resolve(sid)
            out.append(BrokenRow(
                source_id=sid, target_ids=targets, reason="deprecated", suggestion=successor,
                detail=None if successor is not None else "retired without successor",
            ))
        elif base is not None and known_before and base.node(sid).parent != node.parent:
            out.append(BrokenRow(
                source_id=sid, target_ids=targets, reason="moved",
                detail=f"parent {base.node(sid).parent} → {node.parent}: check the mapping still fits",
            ))
        for target_id in targets:
            target_node = target.get(target_id)
            if target_node is None:
                out.append(BrokenRow(source_id=sid, target_ids=targets, reason="target_unknown",
                                     detail=f"{target_id} is not a node of target version {target.version}"))
            elif target_node.deprecated:
                out.append(BrokenRow(source_id=sid, target_ids=targets, reason="target_deprecated",
                                     suggestion=target.resolve(target_id), detail=target_id))
    return out


class RowEdit(BaseModel):
    """Set one row's targets (an empty list: the node has no counterpart), or remove the row
    (``target_ids`` null)."""

    model_config = _FROZEN

    source_id: NodeId
    target_ids: tuple[NodeId, ...] | None = Field(max_length=100)


def apply_row_edits(document: CrosswalkDocument, edits: Iterable[RowEdit]) -> CrosswalkDocument:
    """The document with each edit applied in order (a row replaced in place, appended when
    new, or removed); the order of the other rows is kept."""
    rows: dict[str, CrosswalkRow] = {r.source_id: r for r in document.rows}
    for edit in edits:
        if edit.target_ids is None:
            rows.pop(edit.source_id, None)
        else:
            rows[edit.source_id] = CrosswalkRow(source_id=edit.source_id, target_ids=edit.target_ids)
    return document.model_copy(update={"rows": tuple(rows.values())})
