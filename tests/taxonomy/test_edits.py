from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from taxonomy import (
    AddAttributeValue,
    AddNode,
    AddSynonym,
    AttachAttribute,
    AttributeValueSpec,
    DefineAttribute,
    DeprecateAttribute,
    DeprecateAttributeValue,
    DeprecateNode,
    DetachAttribute,
    Edit,
    EditBatch,
    EditRejected,
    MergeNodes,
    MoveNode,
    RemoveAttributeValue,
    RemoveSynonym,
    RenameAttribute,
    RenameAttributeValue,
    RenameNode,
    SetAttributeRule,
    SetDescription,
    Snapshot,
    UndeprecateAttribute,
    UndeprecateAttributeValue,
    UndeprecateNode,
    apply_edits,
    coerce_edits,
)
from tests.taxonomy.helpers import apparel


def edit(*edits: Any) -> Snapshot:
    return apply_edits(apparel(), coerce_edits(edits))


def rejected(*edits: Any) -> EditRejected:
    before = apparel()
    with pytest.raises(EditRejected) as info:
        apply_edits(before, coerce_edits(edits))
    assert before.document == apparel().document  # nothing leaked into the input
    return info.value


def test_add_rename_move_synonyms_description() -> None:
    snap = edit(
        AddNode(id="polos", name="Polos", parent="tops", synonyms=("Polo shirts",)),
        RenameNode(id="tshirts", name="Tee shirts", keep_old_name_as_synonym=True),
        MoveNode(id="shoes", parent=None),
        AddSynonym(id="fruit", synonym="Fruits"),
        RemoveSynonym(id="tops", synonym="Upper body"),
        SetDescription(id="shirts", description="button-down"),
    )
    assert snap.path("polos") == ("apparel", "tops", "polos")
    assert snap.node("tshirts").synonyms == ("Tees", "T-Shirts")
    assert set(snap.roots) == {"apparel", "food", "shoes"} and snap.node("shoes").level == 1
    assert snap.node("fruit").synonyms == ("Fruits",)
    assert snap.node("tops").synonyms == ()
    assert snap.node("shirts").description == "button-down"
    # the moved node no longer inherits Color from apparel; its own Size stays
    assert [a.id for a in snap.attributes_for("shoes")] == ["size"]


def test_merge_moves_children_and_leaves_a_trail() -> None:
    snap = edit(AddNode(id="clothes", name="Clothes", parent=None), MergeNodes(source="tops", target="clothes"))
    assert snap.node("tops").deprecated and snap.node("tops").replaced_by == "clothes"
    assert snap.children("clothes") == ("shirts", "tshirts")
    assert snap.path("shirts") == ("clothes", "shirts")
    assert set(snap.node("clothes").synonyms) == {"Tops", "Upper body"}
    assert snap.resolve("tops") == "clothes"
    assert "tops" not in snap.active_ids


def test_merge_attaches_attributes_the_target_lacks() -> None:
    snap = edit(AddNode(id="boots", name="Boots", parent="apparel"), MergeNodes(source="shoes", target="boots"))
    assert snap.node("boots").attributes == ("size",)  # color is inherited already: not duplicated


def test_deprecate_and_undeprecate() -> None:
    snap = edit(DeprecateNode(id="shirts", replaced_by="tshirts"))
    assert snap.resolve("shirts") == "tshirts" and snap.is_leaf("tops") is False
    snap = apply_edits(snap, [DeprecateNode(id="tshirts")])
    assert snap.is_leaf("tops") and "tops" in snap.active_leaf_ids
    assert snap.resolve("shirts") is None  # the chain ends at a node without successor
    snap = apply_edits(snap, [UndeprecateNode(id="tshirts")])
    assert snap.resolve("shirts") == "tshirts" and snap.node("tshirts").replaced_by is None


def test_attributes_define_attach_detach_values() -> None:
    snap = edit(
        DefineAttribute(id="material", name="Material", values=(AttributeValueSpec(id="cotton", name="Cotton"),)),
        AddAttributeValue(attribute="material", id="wool", name="Wool"),
        AttachAttribute(category="tops", attribute="material"),
        RemoveAttributeValue(attribute="color", id="blue"),
        DetachAttribute(category="apparel", attribute="brand"),
    )
    assert [v.id for v in snap.attributes["material"].values] == ["cotton", "wool"]
    assert [a.id for a in snap.attributes_for("shirts")] == ["color", "material"]
    assert [v.id for v in snap.attributes["color"].values] == ["red"]


def test_attributes_rename_and_deprecate() -> None:
    snap = edit(
        RenameAttribute(id="color", name="Colour"),
        RenameAttributeValue(attribute="color", id="red", name="Crimson", keep_old_name_as_synonym=True),
        DeprecateAttributeValue(attribute="color", id="blue"),
        DeprecateAttribute(id="brand"),
        DefineAttribute(id="width", name="Width", open_values=True, value_type="number_with_unit", unit="cm",
                        normalization={"kind": "convert_units", "target_unit": "cm"}),
    )
    color = snap.attributes["color"]
    assert color.name == "Colour" and color.id == "color"
    red = color.value("red")
    assert red is not None and red.name == "Crimson" and red.synonyms == ("Red",)
    assert [v.id for v in color.active_values()] == ["red"] and color.value("blue") is not None
    assert snap.attributes["brand"].deprecated
    width = snap.attributes["width"]
    assert width.unit == "cm" and width.normalization is not None and width.normalization.kind == "convert_units"
    inches = apply_edits(snap, [SetAttributeRule(id="width", value_type="number", unit="in")]).attributes["width"]
    assert (inches.value_type, inches.unit, inches.normalization) == ("number", "in", None)
    again = apply_edits(snap, [UndeprecateAttribute(id="brand"),
                               UndeprecateAttributeValue(attribute="color", id="blue")])
    assert not again.attributes["brand"].deprecated and len(again.attributes["color"].active_values()) == 2
    # diffs and migration maps see attribute changes at the value level
    from taxonomy import diff_snapshots, value_migration_map

    merged = apply_edits(again, [DeprecateAttributeValue(attribute="color", id="blue", replaced_by="red")])
    diff = diff_snapshots(apparel(), merged)
    assert [r.new_name for r in diff.attributes_renamed] == ["Colour"]
    assert diff.attributes_deprecated == [] and "width" in diff.attributes_added
    (values,) = diff.attribute_values_changed
    assert values.attribute == "color" and [r.id for r in values.renamed] == ["red"]
    assert [(d.id, d.replaced_by) for d in values.deprecated] == [("blue", "red")]
    assert diff_snapshots(apparel(), snap).attributes_deprecated == ["brand"]
    assert value_migration_map(apparel(), merged) == {"color": {"blue": "red"}}
    assert value_migration_map(apparel(), snap) == {"color": {"blue": None}}
    assert value_migration_map(snap, again) == {}
    # edits travel as JSON (HTTP bodies, the store's edit log)
    assert coerce_edits([{"op": "deprecate_attribute_value", "attribute": "color", "id": "blue"}]) == [
        DeprecateAttributeValue(attribute="color", id="blue")]


@pytest.mark.parametrize(
    ("edits", "code"),
    [
        ([AddNode(id="shirts", name="X", parent=None)], "duplicate_id"),
        ([AddNode(id="old-fruit", name="X", parent=None)], "duplicate_id"),
        ([AddNode(id="x", name="X", parent="nope")], "unknown_parent"),
        ([AddNode(id="x", name="X", parent="old-fruit")], "parent_deprecated"),
        ([AddNode(id="x", name="shirts", parent="tops")], "duplicate_name"),
        ([RenameNode(id="nope", name="X")], "unknown_node"),
        ([RenameNode(id="old-fruit", name="X")], "node_deprecated"),
        ([RenameNode(id="shirts", name="Shirts")], "no_change"),
        ([RenameNode(id="shirts", name="T-SHIRTS")], "duplicate_name"),
        ([MoveNode(id="apparel", parent="shirts")], "cycle"),
        ([MoveNode(id="tops", parent="tops")], "cycle"),
        ([MoveNode(id="shirts", parent="tops")], "no_change"),
        ([MoveNode(id="shirts", parent="old-fruit")], "parent_deprecated"),
        ([MergeNodes(source="apparel", target="shirts")], "cycle"),
        ([MergeNodes(source="shirts", target="shirts")], "invalid_merge"),
        ([MergeNodes(source="old-fruit", target="fruit")], "node_deprecated"),
        ([MergeNodes(source="fruit", target="old-fruit")], "node_deprecated"),
        ([DeprecateNode(id="tops")], "has_active_children"),
        ([DeprecateNode(id="shirts", replaced_by="old-fruit")], "invalid_replacement"),
        ([DeprecateNode(id="shirts", replaced_by="shirts")], "invalid_replacement"),
        ([DeprecateNode(id="shirts", replaced_by="nope")], "invalid_replacement"),
        ([UndeprecateNode(id="fruit")], "not_deprecated"),
        ([AddSynonym(id="tshirts", synonym="Tees")], "duplicate_synonym"),
        ([AddSynonym(id="old-fruit", synonym="x")], "node_deprecated"),
        ([RemoveSynonym(id="shirts", synonym="Tees")], "unknown_synonym"),
        ([DefineAttribute(id="color", name="C")], "duplicate_attribute"),
        ([AddAttributeValue(attribute="color", id="red", name="Red")], "duplicate_value"),
        ([RemoveAttributeValue(attribute="color", id="green")], "unknown_value"),
        ([AttachAttribute(category="shirts", attribute="color")], "already_applicable"),
        ([AttachAttribute(category="shirts", attribute="nope")], "unknown_attribute"),
        ([DetachAttribute(category="shirts", attribute="color")], "not_attached"),
        ([RenameAttribute(id="nope", name="X")], "unknown_attribute"),
        ([RenameAttribute(id="color", name="Color")], "no_change"),
        ([RenameAttributeValue(attribute="color", id="green", name="Green")], "unknown_value"),
        ([RenameAttributeValue(attribute="color", id="red", name="Red")], "no_change"),
        ([RenameAttributeValue(attribute="color", id="red", name="BLUE")], "duplicate_name"),
        ([DeprecateAttribute(id="color"), DeprecateAttribute(id="color")], "no_change"),
        ([UndeprecateAttribute(id="color")], "not_deprecated"),
        ([SetAttributeRule(id="color")], "no_change"),
        ([SetAttributeRule(id="nope", value_type="number")], "unknown_attribute"),
        ([DeprecateAttributeValue(attribute="color", id="green")], "unknown_value"),
        ([UndeprecateAttributeValue(attribute="color", id="red")], "not_deprecated"),
        ([DeprecateAttributeValue(attribute="color", id="red", replaced_by="red")], "invalid_replacement"),
        ([DeprecateAttributeValue(attribute="color", id="blue", replaced_by="red"),
          RemoveAttributeValue(attribute="color", id="red")], "value_in_use"),
        ([DeprecateAttributeValue(attribute="color", id="red", replaced_by="green")], "invalid_replacement"),
        ([DeprecateAttributeValue(attribute="color", id="blue"),
          DeprecateAttributeValue(attribute="color", id="red", replaced_by="blue")], "invalid_replacement"),
        ([{"op": "add_node", "id": " x", "name": "X", "parent": None}], "invalid_edit"),
        ([{"op": "explode", "id": "x"}], "invalid_edit"),
    ],
)
def test_invalid_edits_are_rejected_with_a_code(edits: list[Any], code: str) -> None:
    error = rejected(*edits)
    assert error.code == code, error
    assert error.message


def test_a_batch_is_all_or_nothing_and_names_the_failing_edit() -> None:
    error = rejected(AddNode(id="x", name="X", parent=None), AddNode(id="x", name="Y", parent=None))
    assert (error.code, error.index) == ("duplicate_id", 1)
    assert rejected().code == "empty_batch"


def test_deprecate_then_undeprecate_under_deprecated_parent_is_refused() -> None:
    snap = edit(DeprecateNode(id="shirts"), DeprecateNode(id="tshirts"), DeprecateNode(id="tops"))
    with pytest.raises(EditRejected) as info:
        apply_edits(snap, [UndeprecateNode(id="shirts")])
    assert info.value.code == "parent_deprecated"


def test_edits_are_a_discriminated_union_usable_as_request_bodies() -> None:
    adapter: TypeAdapter[Edit] = TypeAdapter(Edit)
    parsed = adapter.validate_python({"op": "merge", "source": "a", "target": "b"})
    assert parsed == MergeNodes(source="a", target="b")
    batch = EditBatch.model_validate({"expected_version": 3, "edits": [{"op": "deprecate", "id": "a"}]})
    assert batch.edits == [DeprecateNode(id="a")]
    schema = EditBatch.model_json_schema()
    assert "discriminator" in str(schema)
