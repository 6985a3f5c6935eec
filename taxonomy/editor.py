"""Apply a batch of edits to a snapshot: validate each edit, build the next document.

All-or-nothing: the batch works on a private copy, and the first invalid edit raises
:class:`EditRejected` with a stable ``code``, leaving the input snapshot untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from taxonomy.edits import (
    EDIT_LIST,
    AddAttributeValue,
    AddNode,
    AddSynonym,
    AttachAttribute,
    DefineAttribute,
    DeprecateAttribute,
    DeprecateAttributeValue,
    DeprecateNode,
    DetachAttribute,
    Edit,
    ExcludeAttribute,
    IncludeAttribute,
    MergeNodes,
    MoveNode,
    RemoveAttributeValue,
    RemoveSynonym,
    RenameAttribute,
    RenameAttributeValue,
    RenameNode,
    SetAttributeRule,
    SetDescription,
    UndeprecateAttribute,
    UndeprecateAttributeValue,
    UndeprecateNode,
)
from taxonomy.errors import EditRejected, TaxonomyError
from taxonomy.model import Attribute, AttributeValue, Node, paused_gc
from taxonomy.snapshot import Snapshot


def coerce_edits(edits: Iterable[Edit | Mapping[str, Any]]) -> list[Edit]:
    """Edits given as models or as plain dicts (JSON), validated; bad input is rejected."""
    items = list(edits)
    if not items:
        raise EditRejected("empty_batch", "an edit batch needs at least one edit")
    try:
        return EDIT_LIST.validate_python(
            [e.model_dump() if not isinstance(e, Mapping) else e for e in items]
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first["loc"]
        index = loc[0] if loc and isinstance(loc[0], int) else None
        where = ".".join(str(p) for p in loc[1:])
        raise EditRejected("invalid_edit", f"{where or 'edit'}: {first['msg']}", index) from exc


def apply_edits(snapshot: Snapshot, edits: Sequence[Edit], version: int = 0) -> Snapshot:
    """The snapshot that results from applying ``edits`` in order to ``snapshot``."""
    with paused_gc():  # copies every node's entry: see paused_gc
        work = _Working(snapshot)
        for index, edit in enumerate(edits):
            try:
                work.apply(edit)
            except EditRejected as exc:
                raise EditRejected(exc.code, exc.message, index) from None
        return work.snapshot(version)


class _Working:
    """A mutable copy of one snapshot's content (nodes in document order, children lists)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.base = snapshot.document
        self.nodes: dict[str, Node] = dict(snapshot.nodes)
        self.children: dict[str | None, list[str]] = {
            k: list(snapshot.children(k, include_deprecated=True)) for k in snapshot.nodes
        }
        self.children[None] = list(snapshot.all_roots)
        self.attributes: dict[str, Attribute] = dict(snapshot.attributes)

    def snapshot(self, version: int) -> Snapshot:
        doc = self.base.model_copy(
            update={"nodes": tuple(self.nodes.values()), "attributes": tuple(self.attributes.values())}
        )
        try:
            # building re-checks the structure: an editor bug must never reach the store
            return Snapshot(doc, version)
        except TaxonomyError as exc:
            raise EditRejected("inconsistent", f"edit would break the taxonomy: {exc}") from exc

    # ---- lookups and checks -------------------------------------------------------------
    def active(self, node_id: str) -> Node:
        node = self.nodes.get(node_id)
        if node is None:
            raise EditRejected("unknown_node", f"no node {node_id!r}")
        if node.deprecated:
            raise EditRejected(
                "node_deprecated", f"node {node_id!r} is deprecated: undeprecate it before editing"
            )
        return node

    def active_parent(self, parent_id: str | None) -> None:
        if parent_id is None:
            return
        node = self.nodes.get(parent_id)
        if node is None:
            raise EditRejected("unknown_parent", f"no parent node {parent_id!r}")
        if node.deprecated:
            raise EditRejected("parent_deprecated", f"parent {parent_id!r} is deprecated")

    def ancestors(self, node_id: str) -> list[str]:
        out: list[str] = []
        current = self.nodes[node_id].parent
        while current is not None:
            out.append(current)
            current = self.nodes[current].parent
        return out

    def check_name_free(self, parent: str | None, name: str, exclude: str | None = None) -> None:
        folded = name.strip().casefold()
        for sibling in self.children[parent]:
            other = self.nodes[sibling]
            if sibling != exclude and not other.deprecated and other.name.strip().casefold() == folded:
                raise EditRejected(
                    "duplicate_name",
                    f"{'root' if parent is None else repr(parent)} already has an active child "
                    f"named {other.name!r} ({sibling!r})",
                )

    def applicable(self, category: str) -> dict[str, str]:
        """attribute id → the category it is attached at, for the attributes ``category`` has
        (attached to it or an ancestor, not excluded on the way down: as
        :meth:`Snapshot.attributes_for`)."""
        out: dict[str, str] = {}
        for node_id in [*reversed(self.ancestors(category)), category]:
            node = self.nodes[node_id]
            for attr_id in node.excluded_attributes:
                out.pop(attr_id, None)
            for attr_id in node.attributes:
                out.setdefault(attr_id, node_id)
        return out

    def attribute(self, attr_id: str) -> Attribute:
        attr = self.attributes.get(attr_id)
        if attr is None:
            raise EditRejected("unknown_attribute", f"no attribute {attr_id!r}")
        return attr

    def set_parent(self, node_id: str, parent: str | None) -> None:
        self.children[self.nodes[node_id].parent].remove(node_id)
        self.children[parent].append(node_id)
        self.nodes[node_id] = self.nodes[node_id].model_copy(update={"parent": parent})

    def update(self, node_id: str, **changes: Any) -> None:
        self.nodes[node_id] = self.nodes[node_id].model_copy(update=changes)

    # ---- operations ---------------------------------------------------------------------
    def apply(self, edit: Edit) -> None:
        handler = getattr(self, f"_op_{edit.op}")
        handler(edit)

    def _op_add_node(self, edit: AddNode) -> None:
        if edit.id in self.nodes:
            state = "deprecated " if self.nodes[edit.id].deprecated else ""
            raise EditRejected("duplicate_id", f"a {state}node {edit.id!r} already exists")
        self.active_parent(edit.parent)
        self.check_name_free(edit.parent, edit.name)
        self.nodes[edit.id] = Node(
            id=edit.id, name=edit.name, parent=edit.parent, synonyms=_unique(edit.synonyms),
            description=edit.description,
        )
        self.children[edit.id] = []
        self.children[edit.parent].append(edit.id)

    def _op_rename(self, edit: RenameNode) -> None:
        node = self.active(edit.id)
        if edit.name == node.name:
            raise EditRejected("no_change", f"node {edit.id!r} is already named {edit.name!r}")
        self.check_name_free(node.parent, edit.name, exclude=edit.id)
        synonyms = [s for s in node.synonyms if s != edit.name]
        if edit.keep_old_name_as_synonym and node.name not in synonyms:
            synonyms.append(node.name)
        self.update(edit.id, name=edit.name, synonyms=tuple(synonyms))

    def _op_move(self, edit: MoveNode) -> None:
        node = self.active(edit.id)
        if edit.parent == node.parent:
            raise EditRejected("no_change", f"node {edit.id!r} is already under {edit.parent!r}")
        self.active_parent(edit.parent)
        if edit.parent is not None and (edit.parent == edit.id or edit.id in self.ancestors(edit.parent)):
            raise EditRejected("cycle", f"cannot move {edit.id!r} under its own subtree ({edit.parent!r})")
        self.check_name_free(edit.parent, node.name)
        self.set_parent(edit.id, edit.parent)

    def _op_merge(self, edit: MergeNodes) -> None:
        source, target = self.active(edit.source), self.active(edit.target)
        if source.id == target.id:
            raise EditRejected("invalid_merge", f"cannot merge {source.id!r} into itself")
        if source.id in self.ancestors(target.id):
            raise EditRejected("cycle", f"cannot merge {source.id!r} into its descendant {target.id!r}")
        for child in self.children[source.id]:
            if not self.nodes[child].deprecated:
                self.check_name_free(target.id, self.nodes[child].name)
        for child in list(self.children[source.id]):
            self.set_parent(child, target.id)
        synonyms = [s for s in (*target.synonyms, source.name, *source.synonyms) if s != target.name]
        own = self.applicable(target.id)
        # the target's own exclusions win: they say the target does not have that attribute
        attrs = (
            *target.attributes,
            *(a for a in source.attributes if a not in own and a not in target.excluded_attributes),
        )
        self.update(target.id, synonyms=_unique(synonyms), attributes=attrs)
        self.update(source.id, deprecated=True, replaced_by=target.id)

    def _op_deprecate(self, edit: DeprecateNode) -> None:
        self.active(edit.id)
        live = [c for c in self.children[edit.id] if not self.nodes[c].deprecated]
        if live:
            raise EditRejected(
                "has_active_children",
                f"node {edit.id!r} has {len(live)} active children (e.g. {live[0]!r}): "
                "move, merge or deprecate them first",
            )
        if edit.replaced_by is not None:
            if edit.replaced_by == edit.id:
                raise EditRejected("invalid_replacement", "a node cannot replace itself")
            replacement = self.nodes.get(edit.replaced_by)
            if replacement is None or replacement.deprecated:
                raise EditRejected(
                    "invalid_replacement", f"replacement {edit.replaced_by!r} is not an active node"
                )
        self.update(edit.id, deprecated=True, replaced_by=edit.replaced_by)

    def _op_undeprecate(self, edit: UndeprecateNode) -> None:
        node = self.nodes.get(edit.id)
        if node is None:
            raise EditRejected("unknown_node", f"no node {edit.id!r}")
        if not node.deprecated:
            raise EditRejected("not_deprecated", f"node {edit.id!r} is not deprecated")
        self.active_parent(node.parent)
        self.check_name_free(node.parent, node.name, exclude=edit.id)
        self.update(edit.id, deprecated=False, replaced_by=None)

    def _op_add_synonym(self, edit: AddSynonym) -> None:
        node = self.active(edit.id)
        if edit.synonym == node.name or edit.synonym in node.synonyms:
            raise EditRejected("duplicate_synonym", f"{edit.synonym!r} is already a name of {edit.id!r}")
        self.update(edit.id, synonyms=(*node.synonyms, edit.synonym))

    def _op_remove_synonym(self, edit: RemoveSynonym) -> None:
        node = self.active(edit.id)
        if edit.synonym not in node.synonyms:
            raise EditRejected("unknown_synonym", f"{edit.synonym!r} is not a synonym of {edit.id!r}")
        self.update(edit.id, synonyms=tuple(s for s in node.synonyms if s != edit.synonym))

    def _op_set_description(self, edit: SetDescription) -> None:
        node = self.active(edit.id)
        if node.description == edit.description:
            raise EditRejected("no_change", f"node {edit.id!r} already has this description")
        self.update(edit.id, description=edit.description)

    def _op_define_attribute(self, edit: DefineAttribute) -> None:
        if edit.id in self.attributes:
            raise EditRejected("duplicate_attribute", f"attribute {edit.id!r} already exists")
        ids = [v.id for v in edit.values]
        if len(set(ids)) != len(ids):
            raise EditRejected("duplicate_value", f"attribute {edit.id!r} lists a value id twice")
        self.attributes[edit.id] = Attribute(
            id=edit.id, name=edit.name, cardinality=edit.cardinality, open_values=edit.open_values,
            values=tuple(AttributeValue(id=v.id, name=v.name) for v in edit.values),
            description=edit.description, value_type=edit.value_type, unit=edit.unit,
            normalization=edit.normalization,
        )

    def _op_add_attribute_value(self, edit: AddAttributeValue) -> None:
        attr = self.attribute(edit.attribute)
        if attr.value(edit.id) is not None:
            raise EditRejected("duplicate_value", f"attribute {attr.id!r} already allows {edit.id!r}")
        value = AttributeValue(id=edit.id, name=edit.name)
        self.attributes[attr.id] = attr.model_copy(update={"values": (*attr.values, value)})

    def _op_remove_attribute_value(self, edit: RemoveAttributeValue) -> None:
        attr = self.attribute(edit.attribute)
        if attr.value(edit.id) is None:
            raise EditRejected("unknown_value", f"attribute {attr.id!r} has no value {edit.id!r}")
        successors_of = [v.id for v in attr.values if v.replaced_by == edit.id]
        if successors_of:
            raise EditRejected(
                "value_in_use", f"{edit.id!r} replaces deprecated values {successors_of} of {attr.id!r}"
            )
        values = tuple(v for v in attr.values if v.id != edit.id)
        self.attributes[attr.id] = attr.model_copy(update={"values": values})

    def _value_index(self, attr: Attribute, value_id: str) -> int:
        for i, value in enumerate(attr.values):
            if value.id == value_id:
                return i
        raise EditRejected("unknown_value", f"attribute {attr.id!r} has no value {value_id!r}")

    def _replace_value(self, attr: Attribute, index: int, **changes: Any) -> None:
        values = list(attr.values)
        values[index] = values[index].model_copy(update=changes)
        self.attributes[attr.id] = attr.model_copy(update={"values": tuple(values)})

    def _op_rename_attribute(self, edit: RenameAttribute) -> None:
        attr = self.attribute(edit.id)
        if attr.name == edit.name:
            raise EditRejected("no_change", f"attribute {attr.id!r} is already named {edit.name!r}")
        self.attributes[attr.id] = attr.model_copy(update={"name": edit.name})

    def _op_rename_attribute_value(self, edit: RenameAttributeValue) -> None:
        attr = self.attribute(edit.attribute)
        index = self._value_index(attr, edit.id)
        old = attr.values[index]
        if old.name == edit.name:
            raise EditRejected("no_change", f"value {old.id!r} of {attr.id!r} is already named {edit.name!r}")
        folded = edit.name.strip().casefold()
        for other in attr.values:
            if other.id != old.id and not other.deprecated and other.name.strip().casefold() == folded:
                raise EditRejected(
                    "duplicate_name", f"attribute {attr.id!r} already has an active value named {other.name!r}"
                )
        synonyms = old.synonyms
        if edit.keep_old_name_as_synonym and old.name != edit.name:
            synonyms = _unique((*synonyms, old.name))
        self._replace_value(attr, index, name=edit.name, synonyms=synonyms)

    def _op_set_attribute_rule(self, edit: SetAttributeRule) -> None:
        attr = self.attribute(edit.id)
        rule = {"value_type": edit.value_type, "unit": edit.unit, "normalization": edit.normalization}
        if all(getattr(attr, k) == v for k, v in rule.items()):
            raise EditRejected("no_change", f"attribute {attr.id!r} already has this rule")
        self.attributes[attr.id] = attr.model_copy(update=rule)

    def _set_attribute_deprecated(self, attr_id: str, deprecated: bool) -> None:
        attr = self.attribute(attr_id)
        if attr.deprecated == deprecated:
            if deprecated:
                raise EditRejected("no_change", f"attribute {attr_id!r} is already deprecated")
            raise EditRejected("not_deprecated", f"attribute {attr_id!r} is not deprecated")
        self.attributes[attr.id] = attr.model_copy(update={"deprecated": deprecated})

    def _op_deprecate_attribute(self, edit: DeprecateAttribute) -> None:
        self._set_attribute_deprecated(edit.id, True)

    def _op_undeprecate_attribute(self, edit: UndeprecateAttribute) -> None:
        self._set_attribute_deprecated(edit.id, False)

    def _set_value_deprecated(
        self, attr_id: str, value_id: str, deprecated: bool, replaced_by: str | None = None
    ) -> None:
        attr = self.attribute(attr_id)
        index = self._value_index(attr, value_id)
        if attr.values[index].deprecated == deprecated:
            if deprecated:
                raise EditRejected("no_change", f"value {value_id!r} of {attr_id!r} is already deprecated")
            raise EditRejected("not_deprecated", f"value {value_id!r} of {attr_id!r} is not deprecated")
        self._replace_value(attr, index, deprecated=deprecated, replaced_by=replaced_by)

    def _op_deprecate_attribute_value(self, edit: DeprecateAttributeValue) -> None:
        if edit.replaced_by is not None:
            attr = self.attribute(edit.attribute)
            successor = attr.value(edit.replaced_by)
            if successor is None or successor.deprecated or successor.id == edit.id:
                raise EditRejected(
                    "invalid_replacement",
                    f"{edit.replaced_by!r} is not another active value of {edit.attribute!r}",
                )
        self._set_value_deprecated(edit.attribute, edit.id, True, edit.replaced_by)

    def _op_undeprecate_attribute_value(self, edit: UndeprecateAttributeValue) -> None:
        self._set_value_deprecated(edit.attribute, edit.id, False)

    def _op_attach_attribute(self, edit: AttachAttribute) -> None:
        node = self.active(edit.category)
        self.attribute(edit.attribute)
        if edit.attribute in node.excluded_attributes:
            raise EditRejected(
                "excluded",
                f"attribute {edit.attribute!r} is excluded at {edit.category!r}: include it again instead",
            )
        origin = self.applicable(edit.category).get(edit.attribute)
        if origin is not None:
            raise EditRejected(
                "already_applicable", f"attribute {edit.attribute!r} already applies (attached at {origin!r})"
            )
        self.update(edit.category, attributes=(*node.attributes, edit.attribute))

    def _op_detach_attribute(self, edit: DetachAttribute) -> None:
        node = self.active(edit.category)
        if edit.attribute not in node.attributes:
            origin = self.applicable(edit.category).get(edit.attribute)
            hint = f": it is inherited from {origin!r}" if origin else ""
            raise EditRejected(
                "not_attached", f"attribute {edit.attribute!r} is not attached to {edit.category!r}{hint}"
            )
        self.update(edit.category, attributes=tuple(a for a in node.attributes if a != edit.attribute))

    def _op_exclude_attribute(self, edit: ExcludeAttribute) -> None:
        node = self.active(edit.category)
        self.attribute(edit.attribute)
        if edit.attribute in node.excluded_attributes:
            raise EditRejected("no_change", f"attribute {edit.attribute!r} is already excluded at {edit.category!r}")
        if edit.attribute in node.attributes:
            raise EditRejected(
                "attached_here",
                f"attribute {edit.attribute!r} is attached to {edit.category!r} itself: detach it instead",
            )
        if edit.attribute not in self.applicable(edit.category):
            raise EditRejected(
                "not_applicable", f"{edit.category!r} does not inherit attribute {edit.attribute!r}"
            )
        self.update(edit.category, excluded_attributes=(*node.excluded_attributes, edit.attribute))

    def _op_include_attribute(self, edit: IncludeAttribute) -> None:
        node = self.active(edit.category)
        if edit.attribute not in node.excluded_attributes:
            raise EditRejected(
                "not_excluded", f"attribute {edit.attribute!r} is not excluded at {edit.category!r}"
            )
        self.update(
            edit.category,
            excluded_attributes=tuple(a for a in node.excluded_attributes if a != edit.attribute),
        )


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
