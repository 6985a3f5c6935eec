from __future__ import annotations

import pytest

from taxonomy import Node, Snapshot, TaxonomyDocument, TaxonomyError
from tests.taxonomy.helpers import apparel


def test_navigation_and_precomputed_sets() -> None:
    snap = apparel()
    assert snap.version == 0 and len(snap) == 8
    assert "shirts" in snap and "nope" not in snap
    assert snap.get("nope") is None
    with pytest.raises(KeyError):
        snap.node("nope")
    assert snap.roots == ("apparel", "food")
    assert snap.children("tops") == ("shirts", "tshirts")
    assert snap.children("food") == ("fruit",)
    assert snap.children("food", include_deprecated=True) == ("fruit", "old-fruit")
    assert snap.parent("shirts") == "tops" and snap.parent("apparel") is None
    assert snap.path("shirts") == ("apparel", "tops", "shirts")
    assert snap.ancestors("shirts") == ("apparel", "tops")
    assert snap.path_names("shirts") == ("Apparel", "Tops", "Shirts")
    assert snap.path_text("tshirts", sep="/") == "Apparel/Tops/T-Shirts"
    assert snap.node("shirts").level == 3
    assert snap.active_leaf_ids == frozenset({"shirts", "tshirts", "shoes", "fruit"})
    assert snap.active_ids == frozenset(snap.nodes) - {"old-fruit"}
    assert snap.is_leaf("fruit") and not snap.is_leaf("food")
    assert snap.descendants("apparel") == ("tops", "shirts", "tshirts", "shoes")


def test_resolve_and_attribute_inheritance() -> None:
    snap = apparel()
    assert snap.resolve("old-fruit") == "fruit"
    assert snap.resolve("fruit") == "fruit"
    assert snap.resolve("nope") is None
    assert [a.id for a in snap.attributes_for("shoes")] == ["color", "brand", "size"]
    assert [a.id for a in snap.attributes_for("shirts")] == ["color", "brand"]
    assert snap.attributes_for("fruit") == ()
    assert snap.attribute_origin("shirts", "color") == "apparel"


def test_graph_is_frozen_networkx_with_attribute_nodes() -> None:
    snap = apparel()
    g = snap.graph
    assert g.has_edge("tops", "shirts")
    assert g.has_edge("apparel", ("attribute", "color"))
    assert g.has_edge(("attribute", "color"), ("value", "color", "red"))
    with pytest.raises(Exception, match=r"[Ff]rozen"):
        g.add_node("x")
    assert snap.with_version(7).graph.graph["version"] == 7


def test_levels_are_derived_not_trusted() -> None:
    doc = TaxonomyDocument(nodes=(Node(id="a", name="A", level=5), Node(id="b", name="B", parent="a", level=1)))
    snap = Snapshot(doc)
    assert [n.level for n in snap.document.nodes] == [1, 2]


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ((Node(id="a", name="A"), Node(id="a", name="B")), "duplicate node id"),
        ((Node(id="a", name="A", parent="zz"),), "unknown parent"),
        ((Node(id="a", name="A", parent="b"), Node(id="b", name="B", parent="a")), "cycle"),
        ((Node(id="a", name="A", parent="a"),), "cycle"),
        ((Node(id="a", name="A", deprecated=True, replaced_by="q"),), "unknown node"),
        ((Node(id="a", name="A", attributes=("nope",)),), "unknown attribute"),
    ],
)
def test_structural_errors_are_refused(nodes: tuple[Node, ...], message: str) -> None:
    with pytest.raises(TaxonomyError, match=message):
        Snapshot(TaxonomyDocument(nodes=nodes))


@pytest.mark.parametrize("bad", ["", " a", "a ", "a\u200bb", "a\nb"])
def test_node_ids_must_be_exact_and_visible(bad: str) -> None:
    with pytest.raises(ValueError):
        Node(id=bad, name="x")


def test_nodes_are_frozen() -> None:
    node = Node(id="a", name="A")
    with pytest.raises(ValueError):
        node.name = "B"  # type: ignore[misc]


def test_building_pauses_the_cyclic_gc_and_restores_it() -> None:
    import gc

    from taxonomy.model import paused_gc

    assert gc.isenabled()
    with paused_gc():
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # still inside the outer one
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()
    with pytest.raises(TaxonomyError):  # restored when a build fails too
        Snapshot(TaxonomyDocument(nodes=(Node(id="a", name="A", parent="nope"),)))
    assert gc.isenabled()
