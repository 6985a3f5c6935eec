"""Inherited attributes a category does not have (``Node.excluded_attributes``) and deprecated
attributes in ``Snapshot.attributes_for``: the snapshot, the validator, the edit operations
``exclude_attribute`` / ``include_attribute``, diffs, the JSON format and the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from taxonomy import (
    EditRejected,
    ExcludeAttribute,
    IncludeAttribute,
    Node,
    Snapshot,
    TagValidator,
    TaxonomyDocument,
    TaxonomyError,
    TaxonomyStore,
    apply_edits,
    coerce_edits,
    diff_snapshots,
    dump,
    parse_document,
)
from tests.taxonomy.helpers import apparel_document


def _ids(snap: Snapshot, category: str, **kwargs: bool) -> list[str]:
    return [a.id for a in snap.attributes_for(category, **kwargs)]


def _with(doc: TaxonomyDocument, **nodes: dict[str, object]) -> Snapshot:
    return Snapshot(doc.model_copy(update={"nodes": tuple(
        n.model_copy(update=nodes[n.id]) if n.id in nodes else n for n in doc.nodes
    )}))


def test_an_exclusion_holds_for_the_subtree_until_a_descendant_attaches_again() -> None:
    # apparel: color, brand; tops excludes brand; shirts attaches it again
    snap = _with(apparel_document(), tops={"excluded_attributes": ("brand",)}, shirts={"attributes": ("brand",)})
    assert _ids(snap, "apparel") == ["color", "brand"]
    assert _ids(snap, "tops") == ["color"]
    assert _ids(snap, "tshirts") == ["color"]
    assert _ids(snap, "shirts") == ["color", "brand"]
    assert snap.attribute_origin("tshirts", "brand") is None
    assert snap.attribute_origin("shirts", "brand") == "shirts"
    assert snap.attribute_origin("shoes", "brand") == "apparel"
    edges = {(u, v[1]): d["kind"] for u, v, d in snap.graph.out_edges("tops", data=True) if isinstance(v, tuple)}
    assert edges == {("tops", "brand"): "excludes_attribute"}


def test_exclusions_are_checked_when_a_snapshot_is_built() -> None:
    doc = apparel_document()
    with pytest.raises(TaxonomyError, match="excludes unknown attribute"):
        _with(doc, tops={"excluded_attributes": ("nope",)})
    with pytest.raises(TaxonomyError, match="both attaches and excludes"):
        _with(doc, shoes={"excluded_attributes": ("size",)})
    # excluding what is not inherited (any more) is harmless: it says "not here"
    assert _ids(_with(doc, fruit={"excluded_attributes": ("color",)}), "fruit") == []


def test_deprecated_attributes_are_left_out_unless_asked_for() -> None:
    doc = apparel_document()
    doc = doc.model_copy(update={"attributes": tuple(
        a.model_copy(update={"deprecated": a.id == "brand"}) for a in doc.attributes
    )})
    snap = Snapshot(doc)
    assert _ids(snap, "shirts") == ["color"]
    assert _ids(snap, "shirts", include_deprecated=True) == ["color", "brand"]
    assert snap.attribute_origin("shirts", "brand") == "apparel"  # still attached, for old tags
    # the validator still says why (deprecated), not "does not apply"
    report = TagValidator().validate(snap, [{"id": "shirts", "attributes": [{"attribute": "brand", "values": ["x"]}]}])
    assert [e.message for e in report.errors] == ["attribute 'brand' is deprecated"]


def test_the_validator_refuses_an_excluded_attribute() -> None:
    snap = _with(apparel_document(), tops={"excluded_attributes": ("color",)})
    report = TagValidator().validate(snap, [
        {"id": "shirts", "attributes": [{"attribute": "color", "values": ["red"]}]},
        {"id": "shoes", "attributes": [{"attribute": "color", "values": ["red"]}]},
    ])
    assert [(e.tag, e.rule) for e in report.errors] == [("color", "attribute_not_applicable")]
    assert report.accepted_attributes == {"shoes": {"color": ["red"]}}


def test_exclude_and_include_edits() -> None:
    base = Snapshot(apparel_document())
    snap = apply_edits(base, coerce_edits([{"op": "exclude_attribute", "category": "tops", "attribute": "brand"}]), 1)
    assert snap.node("tops").excluded_attributes == ("brand",)
    assert _ids(snap, "shirts") == ["color"]
    # a descendant can attach it again; the excluding node itself must include it instead
    again = apply_edits(snap, coerce_edits([{"op": "attach_attribute", "category": "shirts", "attribute": "brand"}]), 2)
    assert _ids(again, "shirts") == ["color", "brand"]

    def rejected(start: Snapshot, edit: dict[str, str]) -> str:
        with pytest.raises(EditRejected) as info:
            apply_edits(start, coerce_edits([edit]), 9)
        return info.value.code

    assert rejected(snap, {"op": "attach_attribute", "category": "tops", "attribute": "brand"}) == "excluded"
    assert rejected(snap, {"op": "exclude_attribute", "category": "tops", "attribute": "brand"}) == "no_change"
    assert rejected(base, {"op": "exclude_attribute", "category": "shoes", "attribute": "size"}) == "attached_here"
    assert rejected(base, {"op": "exclude_attribute", "category": "fruit", "attribute": "color"}) == "not_applicable"
    assert rejected(base, {"op": "exclude_attribute", "category": "tops", "attribute": "nope"}) == "unknown_attribute"
    assert rejected(base, {"op": "include_attribute", "category": "tops", "attribute": "brand"}) == "not_excluded"
    back = apply_edits(snap, [IncludeAttribute(category="tops", attribute="brand")], 2)
    assert back.document == base.document
    # merging keeps the target's exclusions
    merged = apply_edits(snap, coerce_edits([
        {"op": "add_node", "id": "polos", "name": "Polos", "parent": "apparel"},
        {"op": "attach_attribute", "category": "tops", "attribute": "size"},
        {"op": "exclude_attribute", "category": "polos", "attribute": "brand"},
        {"op": "merge", "source": "polos", "target": "tops"},
    ]), 3)
    assert merged.node("tops").excluded_attributes == ("brand",)


def test_exclusions_in_diffs_and_the_json_format() -> None:
    base = Snapshot(apparel_document())
    snap = apply_edits(base, [ExcludeAttribute(category="tops", attribute="brand")], 1)
    diff = diff_snapshots(base, snap)
    assert [c.model_dump() for c in diff.attachments_changed] == [
        {"category": "tops", "attached": [], "detached": [], "excluded": ["brand"], "included": []}
    ]
    back = apply_edits(snap, [IncludeAttribute(category="tops", attribute="brand")], 2)
    assert diff_snapshots(snap, back).attachments_changed[0].included == ["brand"]
    text = dump(snap, "json")
    assert '"excluded_attributes"' in text
    assert Snapshot(parse_document(text, "json")).document == snap.document
    assert Node.model_validate({"id": "x", "name": "X"}).excluded_attributes == ()


def test_exclusion_edits_are_versioned_and_replayed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'taxonomy.db'}"
    with TaxonomyStore(url, checkpoint_every=50) as store:
        store.import_document(apparel_document())
        store.apply([ExcludeAttribute(category="tops", attribute="brand")], expected_version=1)
        store.apply([IncludeAttribute(category="tops", attribute="brand")], expected_version=2)
        assert [e.op for e in store.edits(2)] == ["exclude_attribute"]
    with TaxonomyStore(url) as reopened:
        assert _ids(reopened.snapshot(2), "shirts") == ["color"]
        assert _ids(reopened.current(), "shirts") == ["color", "brand"]
        assert reopened.diff(1, 2).attachments_changed[0].excluded == ["brand"]
