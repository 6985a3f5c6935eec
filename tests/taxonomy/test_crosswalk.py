"""Crosswalks: import and validation against both taxonomies, versions, counterparts (mapped,
ancestor, unmapped), rows broken by edits of the source taxonomy, Shopify's published form."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest

from taxonomy import (
    MergeNodes,
    MoveNode,
    Node,
    StaleVersion,
    TaxonomyDocument,
    TaxonomyFormatError,
    TaxonomyStore,
)
from taxonomy.crosswalk import CrosswalkDocument, CrosswalkRow, RowEdit
from taxonomy.crosswalk_catalog import (
    PACKAGED_GOOGLE_CROSSWALK,
    PACKAGED_GOOGLE_TAXONOMY,
    CrosswalkCatalog,
    MissingTaxonomy,
)
from taxonomy.crosswalk_store import CrosswalkStore, UnknownCrosswalk
from taxonomy.default import default_taxonomy_path
from taxonomy.formats.crosswalk import SHOPIFY_CATEGORY_PREFIX, parse_crosswalk, read_crosswalk
from tests.taxonomy.helpers import SHARED_DATA, apparel_document


def target_document() -> TaxonomyDocument:
    rows = [
        {"id": "g1", "name": "Apparel & Accessories"},
        {"id": "g2", "name": "Clothing", "parent": "g1"},
        {"id": "g3", "name": "Shirts & Tops", "parent": "g2"},
        {"id": "g4", "name": "Shoes", "parent": "g1"},
        {"id": "g5", "name": "Food"},
        {"id": "g6", "name": "Produce (old)", "parent": "g5", "deprecated": True, "replaced_by": "g5"},
    ]
    return TaxonomyDocument(name="target", source_version="2021", nodes=tuple(Node.model_validate(r) for r in rows))


def crosswalk_document() -> CrosswalkDocument:
    rows = {
        "apparel": ["g1"], "tops": ["g3"], "shirts": ["g3"], "shoes": ["g4", "g99"], "fruit": ["g5"],
        "food": [], "old-fruit": ["g6"], "ghost": ["g2"],  # tshirts: no row of its own
    }
    return CrosswalkDocument(
        title="test", target_taxonomy="target", source_label="apparel/t1", target_label="target/2021",
        rows=tuple(CrosswalkRow(source_id=k, target_ids=tuple(v)) for k, v in rows.items()),
    )


@pytest.fixture
def catalog(tmp_path: Path) -> CrosswalkCatalog:
    store = TaxonomyStore(f"sqlite:///{tmp_path / 'taxonomy.db'}")
    store.import_document(apparel_document())
    cat = CrosswalkCatalog(tmp_path, store)
    cat.import_taxonomy("target", target_document())
    return cat


def test_import_validates_against_both_taxonomies_and_keeps_every_row(catalog: CrosswalkCatalog) -> None:
    crosswalk, report = catalog.import_crosswalk("target", crosswalk_document(), message="first")
    assert crosswalk.version == 1 and crosswalk.info.source_version == 1 and crosswalk.info.target_version == 1
    assert len(crosswalk.document.rows) == 8  # nothing dropped, problems or not
    assert report.unknown_source == ["ghost"]
    assert report.deprecated_source == ["old-fruit"]
    assert [(p.source_id, p.target_id) for p in report.unknown_target] == [("shoes", "g99")]
    assert [(p.source_id, p.target_id) for p in report.deprecated_target] == [("old-fruit", "g6")]
    assert report.empty == 1 and report.mapped == 6  # food's row is empty, old-fruit's only target retired
    assert report.uncovered_leaves == 1  # tshirts
    # the target taxonomy lives in its own versioned store beside the tagging taxonomy's
    assert (catalog.data_dir / "taxonomies" / "target.db").exists()
    assert catalog.taxonomy_store("target").version == 1


def test_a_missing_target_taxonomy_or_crosswalk_is_reported(catalog: CrosswalkCatalog) -> None:
    other = crosswalk_document().model_copy(update={"target_taxonomy": "nowhere"})
    with pytest.raises(MissingTaxonomy):
        catalog.import_crosswalk("other", other)
    assert "other" not in catalog.names()
    with pytest.raises(UnknownCrosswalk):
        catalog.get("other")
    with pytest.raises(ValueError):
        catalog.import_crosswalk("Bad Name!", crosswalk_document())


def test_every_import_and_edit_is_a_version(catalog: CrosswalkCatalog, tmp_path: Path) -> None:
    catalog.import_crosswalk("target", crosswalk_document())
    edited, report = catalog.edit(
        "target", [RowEdit(source_id="tshirts", target_ids=("g3",)), RowEdit(source_id="ghost", target_ids=None),
                   RowEdit(source_id="shoes", target_ids=("g4",))],
        expected_version=1, author="ed", message="fix",
    )
    assert edited.version == 2 and edited.info.kind == "edit" and edited.info.author == "ed"
    assert edited.rows["tshirts"].target_ids == ("g3",) and "ghost" not in edited.rows
    assert report.unknown_source == [] and report.unknown_target == [] and report.uncovered_leaves == 0
    with pytest.raises(StaleVersion):  # made against version 1, which is no longer current
        catalog.edit("target", [RowEdit(source_id="food", target_ids=("g5",))], expected_version=1)
    assert catalog.store.head("target") == 2
    reimported, _ = catalog.import_crosswalk("target", crosswalk_document())
    assert reimported.version == 3
    # old versions stay readable, from a fresh store too
    with CrosswalkStore(f"sqlite:///{tmp_path / 'crosswalks.db'}") as fresh:
        assert [v.version for v in fresh.versions("target")] == [1, 2, 3]
        assert "ghost" in fresh.get("target", 1).rows and "ghost" not in fresh.get("target", 2).rows
        assert fresh.get("target").version == 3


def test_counterparts_mapped_ancestor_unmapped(catalog: CrosswalkCatalog) -> None:
    catalog.import_crosswalk("target", crosswalk_document())
    _, shirts = catalog.counterpart("target", "shirts")
    assert (shirts.status, shirts.source_id, shirts.target_ids) == ("mapped", "shirts", ("g3",))
    _, tees = catalog.counterpart("target", "tshirts")  # no row: its parent's
    assert (tees.status, tees.source_id, tees.target_ids) == ("ancestor", "tops", ("g3",))
    _, strict = catalog.counterpart("target", "tshirts", fallback=False)
    assert strict.status == "unmapped" and strict.target_ids == () and strict.reason == "no row for this node"
    _, food = catalog.counterpart("target", "food")  # an explicit "no counterpart", and a root
    assert food.status == "unmapped" and food.reason == "the row maps to no node"
    _, shoes = catalog.counterpart("target", "shoes")  # the unknown target is left out
    assert shoes.target_ids == ("g4",)
    _, old = catalog.counterpart("target", "old-fruit")  # a retired target follows its successor
    assert old.target_ids == ("g5",)
    resolved = catalog.resolve("target")
    assert resolved.crosswalk.by_target["g3"] == ("tops", "shirts")


def test_rows_broken_by_source_edits(catalog: CrosswalkCatalog) -> None:
    catalog.import_crosswalk("target", crosswalk_document())
    store = catalog.default_store
    baseline = {(r.source_id, r.reason) for r in catalog.broken("target")}
    assert baseline == {("ghost", "unknown_source"), ("old-fruit", "deprecated"),
                        ("shoes", "target_unknown"), ("old-fruit", "target_deprecated")}
    store.apply([MergeNodes(source="shirts", target="tshirts")], expected_version=1)
    store.apply([MoveNode(id="shoes", parent="tops")], expected_version=2)
    rows = catalog.broken("target")
    found = {(r.source_id, r.reason): r for r in rows}
    assert set(found) - baseline == {("shirts", "deprecated"), ("shoes", "moved")}
    assert found[("shirts", "deprecated")].suggestion == "tshirts"  # where its tags migrate
    assert "apparel → tops" in (found[("shoes", "moved")].detail or "")
    # computed for any version: version 1 of the source breaks nothing new
    assert {(r.source_id, r.reason) for r in catalog.broken("target", source_version=1)} == baseline
    # a re-import without a node removes it
    doc = store.current().document
    gone = {"fruit", "old-fruit"}
    store.import_document(doc.model_copy(update={"nodes": tuple(n for n in doc.nodes if n.id not in gone)}))
    removed = {(r.source_id, r.reason, r.suggestion) for r in catalog.broken("target")
               if r.source_id in gone and not r.reason.startswith("target")}
    assert removed == {("fruit", "removed", None), ("old-fruit", "removed", None)}


def test_shopify_published_form() -> None:
    data = {
        "name": "Shopify → Google", "input_taxonomy": "shopify/2024-04", "output_taxonomy": "google/2021-09-21",
        "source": "MIT", "note": "n", "mapping": {"ap": ["1"], "ap-1": ["3237", "3237"], "gid://shopify/TaxonomyCategory/x": ["5"]},
    }
    doc = parse_crosswalk(data)
    assert doc.target_taxonomy == "google" and doc.source_label == "shopify/2024-04" and doc.source == "MIT"
    assert [(r.source_id, r.target_ids) for r in doc.rows] == [
        (SHOPIFY_CATEGORY_PREFIX + "ap", ("1",)), (SHOPIFY_CATEGORY_PREFIX + "ap-1", ("3237",)),
        ("gid://shopify/TaxonomyCategory/x", ("5",)),
    ]
    assert parse_crosswalk(json.loads(doc.model_dump_json()), target_taxonomy="g2").rows == doc.rows  # our own form
    for bad in ({"mapping": []}, {"mapping": {"a": [1]}, "input_taxonomy": "s/1", "output_taxonomy": "g/1"},
                {"rows": [{"source_id": ""}], "target_taxonomy": "g"}, [],
                {"mapping": {"a": "1"}, "input_taxonomy": "s/1", "output_taxonomy": "g/1"},
                {"rows": [{"source_id": "a"}, {"source_id": "a"}], "target_taxonomy": "g"}):
        with pytest.raises(TaxonomyFormatError):
            parse_crosswalk(bad)


def test_packaged_files_are_the_shared_ones() -> None:
    """The packaged mapping and Google taxonomy are the shared files, gzipped (gzip -9 -n)."""
    for packaged in (PACKAGED_GOOGLE_CROSSWALK, PACKAGED_GOOGLE_TAXONOMY):
        shared = SHARED_DATA / "taxonomies" / packaged.name.removesuffix(".gz")
        if not shared.exists():
            pytest.skip("shared data not present")
        assert gzip.decompress(packaged.read_bytes()) == shared.read_bytes()


@pytest.mark.slow  # ~3.5 s on 2 shared cores, mostly importing the 10,281-node default taxonomy
def test_the_real_shopify_to_google_mapping(tmp_path: Path) -> None:
    """The packaged mapping on the packaged 2024-07 taxonomy: rows of 2024-04 ids that 2024-07
    no longer has are kept and reported as unresolved, never dropped."""
    started = time.perf_counter()
    store = TaxonomyStore(f"sqlite:///{tmp_path / 'taxonomy.db'}")
    store.import_taxonomy(default_taxonomy_path())
    with CrosswalkCatalog(tmp_path, store) as cat:
        crosswalk, report = cat.install_packaged()
        assert len(crosswalk.document.rows) == 10_252 == report.rows
        assert report.unknown_target == [] and report.deprecated_target == []
        assert len(report.unknown_source) == 10_252 - 10_167  # the file covers 10,167 of the 2024-07 categories
        broken = cat.broken("google")
        assert {r.reason for r in broken} == {"unknown_source"} and len(broken) == len(report.unknown_source)
        _, found = cat.counterpart("google", SHOPIFY_CATEGORY_PREFIX + "ap-2-1-1-2-1")
        assert found.status == "mapped" and found.target_ids == ("7386",)
        assert read_crosswalk(PACKAGED_GOOGLE_CROSSWALK).rows == crosswalk.document.rows
    store.close()
    assert time.perf_counter() - started < 30
