"""Check proposed tags against one snapshot: report, never raise.

Ids match byte-exactly. A near miss (case, whitespace, Unicode look-alike, a name given
for an id) is rejected like any unknown id, with the exact id as a suggestion.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from taxonomy.lookalike import lookalike_key
from taxonomy.snapshot import Snapshot

Rule = Literal[
    "malformed",  # not a string / not a tag object
    "unknown_id",  # no such node in this snapshot (suggestion: a near-miss match)
    "deprecated",  # node exists but is retired (suggestion: its active successor)
    "not_leaf",  # leaf-only validator, node has active children
    "duplicate",  # the same id (or attribute of a tag) twice
    "path_inconsistent",  # a given path is not the node's root→node chain
    "unknown_attribute",
    "attribute_not_applicable",  # attribute exists but not on this category or its ancestors
    "value_not_allowed",
    "cardinality",  # several values for a single-valued attribute, or none
]


class AttributeAssignment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    attribute: str
    values: tuple[str, ...] = Field(description="value ids (free text for open-vocabulary attributes)")


class ProposedTag(BaseModel):
    """A category id, optionally with the path it was chosen through and attribute values."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    path: tuple[str, ...] | None = Field(default=None, description="ids, root first, ending with id")
    attributes: tuple[AttributeAssignment, ...] = ()


class TagError(BaseModel):
    index: int = Field(description="position of the tag in the input (-1: the input as a whole)")
    tag: str = Field(description="the offending id or value, as given")
    rule: Rule
    message: str
    suggestion: str | None = None
    attribute: str | None = None


class ValidationReport(BaseModel):
    snapshot_version: int
    ok: bool
    accepted: list[str] = Field(description="category ids that passed every category rule")
    accepted_attributes: dict[str, dict[str, list[str]]] = Field(
        default_factory=dict, description="category id → attribute id → accepted values"
    )
    errors: list[TagError] = []


class TagValidator:
    """``leaf_only``: only active leaves are acceptable categories (e.g. a GPC class)."""

    def __init__(self, leaf_only: bool = False) -> None:
        self.leaf_only = leaf_only

    def validate(self, snapshot: Snapshot, tags: object) -> ValidationReport:
        """``tags``: ids, :class:`ProposedTag` objects or their dicts (a single one is allowed)."""
        report = ValidationReport(snapshot_version=snapshot.version, ok=True, accepted=[])
        seen: set[str] = set()
        for index, raw in enumerate(_as_list(tags, report)):
            tag = _as_tag(raw, index, report)
            if tag is None:
                continue
            if tag.id in seen:
                _err(report, index, tag.id, "duplicate", f"{tag.id!r} is proposed twice")
                continue
            seen.add(tag.id)
            if not self._check_category(snapshot, tag.id, index, report):
                continue
            if tag.path is not None and tag.path != snapshot.path(tag.id):
                _err(report, index, tag.id, "path_inconsistent",
                     f"path {list(tag.path)} is not the path of {tag.id!r}",
                     suggestion=" > ".join(snapshot.path(tag.id)))
                continue
            report.accepted.append(tag.id)
            self._check_attributes(snapshot, tag, index, report)
        report.ok = not report.errors
        return report

    def validate_path(self, snapshot: Snapshot, path: object) -> ValidationReport:
        """A root-first chain of ids (e.g. segment > family > class): each id must be valid and
        each level the parent of the next, starting at a root; leaf-only applies to the last."""
        report = ValidationReport(snapshot_version=snapshot.version, ok=True, accepted=[])
        items = _as_list(path, report)
        previous: str | None = None
        for index, raw in enumerate(items):
            if not isinstance(raw, str):
                _err(report, index, repr(raw), "malformed", "a path element must be an id string")
                previous = None
                continue
            last = index == len(items) - 1
            if self._check_category(snapshot, raw, index, report, need_leaf=last):
                parent = snapshot.parent(raw)
                expected = None if index == 0 else previous
                if parent != expected or (index > 0 and previous is None):
                    where = "a root" if index == 0 else f"a child of {previous!r}"
                    _err(report, index, raw, "path_inconsistent", f"{raw!r} is not {where}",
                         suggestion=" > ".join(snapshot.path(raw)))
                else:
                    report.accepted.append(raw)
            previous = raw
        if not items:
            _err(report, -1, "", "malformed", "the path is empty")
        report.ok = not report.errors
        return report

    # ---- rules --------------------------------------------------------------------------
    def _check_category(
        self, snapshot: Snapshot, node_id: str, index: int, report: ValidationReport,
        *, need_leaf: bool = True,
    ) -> bool:
        node = snapshot.get(node_id)
        if node is None:
            suggestion = suggest_id(snapshot, node_id)
            hint = f"; did you mean {suggestion!r}? (ids match exactly)" if suggestion else ""
            _err(report, index, node_id, "unknown_id",
                 f"{node_id!r} is not a node of taxonomy version {snapshot.version}{hint}",
                 suggestion=suggestion)
            return False
        if node.deprecated:
            successor = snapshot.resolve(node_id)
            hint = f"; use {successor!r}" if successor else ""
            _err(report, index, node_id, "deprecated", f"{node_id!r} is deprecated{hint}",
                 suggestion=successor)
            return False
        if self.leaf_only and need_leaf and not snapshot.is_leaf(node_id):
            _err(report, index, node_id, "not_leaf",
                 f"{node_id!r} has subcategories; a leaf is required")
            return False
        return True

    def _check_attributes(
        self, snapshot: Snapshot, tag: ProposedTag, index: int, report: ValidationReport
    ) -> None:
        # deprecated ones too: they are refused below with their own message
        applicable = {a.id: a for a in snapshot.attributes_for(tag.id, include_deprecated=True)}
        accepted: dict[str, list[str]] = {}
        for assignment in tag.attributes:
            attr_id = assignment.attribute
            attr = snapshot.attributes.get(attr_id)
            if attr is None:
                suggestion = _lookup(snapshot.attributes, attr_id)
                _err(report, index, attr_id, "unknown_attribute", f"no attribute {attr_id!r}",
                     suggestion=suggestion, attribute=attr_id)
                continue
            if attr_id not in applicable:
                _err(report, index, attr_id, "attribute_not_applicable",
                     f"attribute {attr_id!r} does not apply to {tag.id!r}", attribute=attr_id)
                continue
            if attr.deprecated:
                _err(report, index, attr_id, "attribute_not_applicable",
                     f"attribute {attr_id!r} is deprecated", attribute=attr_id)
                continue
            if attr_id in accepted:
                _err(report, index, attr_id, "duplicate", f"attribute {attr_id!r} given twice",
                     attribute=attr_id)
                continue
            values = list(dict.fromkeys(assignment.values))
            if not values or (attr.cardinality == "single" and len(values) > 1):
                _err(report, index, attr_id, "cardinality",
                     f"attribute {attr_id!r} takes {'exactly one value' if attr.cardinality == 'single' else 'one or more values'}, got {len(values)}",
                     attribute=attr_id)
                continue
            allowed = {v.id: v for v in attr.values}
            good = []
            for value in values:
                if value in allowed and allowed[value].deprecated and not attr.open_values:
                    _err(report, index, value, "value_not_allowed",
                         f"{value!r} is a deprecated value of {attr_id!r}",
                         suggestion=_lookup({k: v for k, v in allowed.items() if not v.deprecated}, value),
                         attribute=attr_id)
                elif attr.open_values or value in allowed:
                    good.append(value)
                else:
                    _err(report, index, value, "value_not_allowed",
                         f"{value!r} is not an allowed value of {attr_id!r}",
                         suggestion=_lookup(allowed, value), attribute=attr_id)
            accepted[attr_id] = good
        if accepted:
            report.accepted_attributes[tag.id] = accepted


def suggest_id(snapshot: Snapshot, given: str) -> str | None:
    """The active id a near miss most likely meant (look-alike id, then a node name)."""
    key = lookalike_key(given)
    for index in (snapshot.lookalike_ids, snapshot.lookalike_names):
        for candidate in index.get(key, ()):
            resolved = snapshot.resolve(candidate)
            if resolved is not None and resolved != given:
                return resolved
    return None


def _lookup(options: Mapping[str, object], given: str) -> str | None:
    key = lookalike_key(given)
    return next((k for k in options if lookalike_key(k) == key and k != given), None)


def _err(report: ValidationReport, index: int, tag: str, rule: Rule, message: str,
         suggestion: str | None = None, attribute: str | None = None) -> None:
    report.errors.append(TagError(index=index, tag=tag, rule=rule, message=message,
                                  suggestion=suggestion, attribute=attribute))


def _as_list(tags: object, report: ValidationReport) -> list[object]:
    if isinstance(tags, str | Mapping | ProposedTag):
        return [tags]
    if isinstance(tags, Iterable):
        try:
            return list(tags)
        except Exception as exc:  # a broken iterator is bad input, not our crash
            _err(report, -1, "", "malformed", f"cannot read the tags: {exc}")
            return []
    _err(report, -1, repr(tags)[:200], "malformed", "tags must be a list of ids or tag objects")
    return []


def _as_tag(raw: object, index: int, report: ValidationReport) -> ProposedTag | None:
    if isinstance(raw, str):
        return ProposedTag(id=raw)
    if isinstance(raw, ProposedTag):
        return raw
    try:
        return ProposedTag.model_validate(raw)
    except ValidationError as exc:
        _err(report, index, repr(raw)[:200], "malformed", f"not a tag: {exc.errors()[0]['msg']}")
        return None
