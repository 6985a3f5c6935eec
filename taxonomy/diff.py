"""What changed between two snapshots, and how stored tags migrate from one to the other."""

from __future__ import annotations

from pydantic import BaseModel, Field

from taxonomy.model import Attribute
from taxonomy.snapshot import Snapshot


class Renamed(BaseModel):
    id: str
    old_name: str
    new_name: str


class Moved(BaseModel):
    id: str
    old_parent: str | None
    new_parent: str | None


class Deprecated(BaseModel):
    id: str
    replaced_by: str | None = Field(description="the direct successor recorded on the node")


class AttributeChange(BaseModel):
    category: str
    attached: list[str] = []
    detached: list[str] = []
    excluded: list[str] = Field(default=[], description="inherited attributes the category no longer has")
    included: list[str] = Field(default=[], description="exclusions lifted: inherited again")


class AttributeValuesChange(BaseModel):
    """Value-level changes of one attribute present in both versions."""

    attribute: str
    added: list[str] = []
    removed: list[str] = []
    renamed: list[Renamed] = []
    deprecated: list[Deprecated] = []
    undeprecated: list[str] = []


class TaxonomyDiff(BaseModel):
    from_version: int
    to_version: int
    added: list[str] = []
    removed: list[str] = []
    renamed: list[Renamed] = []
    moved: list[Moved] = []
    deprecated: list[Deprecated] = []
    undeprecated: list[str] = []
    synonyms_changed: list[str] = []
    descriptions_changed: list[str] = []
    attachments_changed: list[AttributeChange] = []
    attributes_added: list[str] = []
    attributes_removed: list[str] = []
    attributes_changed: list[str] = Field(
        default=[], description="anything of the definition changed (name, cardinality, values, rule ...)"
    )
    attributes_renamed: list[Renamed] = []
    attributes_deprecated: list[str] = []
    attributes_undeprecated: list[str] = []
    attribute_values_changed: list[AttributeValuesChange] = []

    @property
    def is_empty(self) -> bool:
        return not any(
            getattr(self, name) for name in type(self).model_fields if name not in ("from_version", "to_version")
        )

    def summary(self) -> dict[str, int]:
        return {
            name: len(getattr(self, name))
            for name in type(self).model_fields
            if name not in ("from_version", "to_version")
        }


def diff_snapshots(old: Snapshot, new: Snapshot) -> TaxonomyDiff:
    result = TaxonomyDiff(from_version=old.version, to_version=new.version)
    result.added = [k for k in new.nodes if k not in old.nodes]
    result.removed = [k for k in old.nodes if k not in new.nodes]
    for node_id, before in old.nodes.items():
        after = new.nodes.get(node_id)
        if after is None or after == before:
            continue
        if after.name != before.name:
            result.renamed.append(Renamed(id=node_id, old_name=before.name, new_name=after.name))
        if after.parent != before.parent:
            result.moved.append(Moved(id=node_id, old_parent=before.parent, new_parent=after.parent))
        if after.deprecated and not before.deprecated:
            result.deprecated.append(Deprecated(id=node_id, replaced_by=after.replaced_by))
        if before.deprecated and not after.deprecated:
            result.undeprecated.append(node_id)
        if after.synonyms != before.synonyms:
            result.synonyms_changed.append(node_id)
        if after.description != before.description:
            result.descriptions_changed.append(node_id)
        if after.attributes != before.attributes or after.excluded_attributes != before.excluded_attributes:
            result.attachments_changed.append(
                AttributeChange(
                    category=node_id,
                    attached=[a for a in after.attributes if a not in before.attributes],
                    detached=[a for a in before.attributes if a not in after.attributes],
                    excluded=[a for a in after.excluded_attributes if a not in before.excluded_attributes],
                    included=[a for a in before.excluded_attributes if a not in after.excluded_attributes],
                )
            )
    result.attributes_added = [k for k in new.attributes if k not in old.attributes]
    result.attributes_removed = [k for k in old.attributes if k not in new.attributes]
    result.attributes_changed = [
        k for k, a in old.attributes.items() if k in new.attributes and new.attributes[k] != a
    ]
    for attr_id in result.attributes_changed:
        before_attr, after_attr = old.attributes[attr_id], new.attributes[attr_id]
        if before_attr.name != after_attr.name:
            result.attributes_renamed.append(Renamed(id=attr_id, old_name=before_attr.name, new_name=after_attr.name))
        if after_attr.deprecated and not before_attr.deprecated:
            result.attributes_deprecated.append(attr_id)
        if before_attr.deprecated and not after_attr.deprecated:
            result.attributes_undeprecated.append(attr_id)
        if before_attr.values != after_attr.values:
            result.attribute_values_changed.append(_values_change(attr_id, before_attr, after_attr))
    return result


def _values_change(attr_id: str, before: Attribute, after: Attribute) -> AttributeValuesChange:
    old_values = {v.id: v for v in before.values}
    new_values = {v.id: v for v in after.values}
    change = AttributeValuesChange(
        attribute=attr_id,
        added=[k for k in new_values if k not in old_values],
        removed=[k for k in old_values if k not in new_values],
    )
    for value_id, was in old_values.items():
        now = new_values.get(value_id)
        if now is None:
            continue
        if now.name != was.name:
            change.renamed.append(Renamed(id=value_id, old_name=was.name, new_name=now.name))
        if now.deprecated and not was.deprecated:
            change.deprecated.append(Deprecated(id=value_id, replaced_by=now.replaced_by))
        if was.deprecated and not now.deprecated:
            change.undeprecated.append(value_id)
    return change


def value_migration_map(old: Snapshot, new: Snapshot) -> dict[str, dict[str, str | None]]:
    """attribute id → {value id of ``old`` that is not an active value of ``new`` → the active
    value stored attribute tags should move to (following ``replaced_by``), or None}. Like
    :func:`migration_map`, values that stay active are left out; an attribute removed from
    ``new`` maps all its values to None."""
    out: dict[str, dict[str, str | None]] = {}
    for attr_id, attr in old.attributes.items():
        current = new.attributes.get(attr_id)
        values = {v.id: v for v in current.values} if current is not None else {}
        moves: dict[str, str | None] = {}
        for value in attr.values:
            now = values.get(value.id)
            if now is not None and not now.deprecated:
                continue
            seen: set[str] = set()
            while now is not None and now.deprecated and now.replaced_by is not None and now.id not in seen:
                seen.add(now.id)
                now = values.get(now.replaced_by)
            moves[value.id] = now.id if now is not None and not now.deprecated else None
        if moves:
            out[attr_id] = moves
    return out


def migration_map(old: Snapshot, new: Snapshot) -> dict[str, str | None]:
    """For every id of ``old`` that is not an active id of ``new``: the active id of ``new``
    that stored tags should move to (following merges and replacements), or None when the
    node was retired without a successor (or removed by a re-import). Active ids that survive
    unchanged are left out: they map to themselves."""
    return {node_id: new.resolve(node_id) for node_id in old.nodes if node_id not in new.active_ids}
