from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from taxonomy import (
    DEFAULT_TAXONOMY_FORMAT,
    Node,
    Snapshot,
    TaxonomyFormatError,
    default_taxonomy_path,
    dump,
    load_default_taxonomy,
    load_taxonomy,
    parse_document,
)
from tests.conftest import shared_file
from tests.taxonomy.helpers import GOOGLE_JSON, SHOPIFY_JSON, apparel


def _graph(snap: Snapshot) -> list[tuple[str, str, str | None]]:
    return [(n.id, n.name, n.parent) for n in snap.document.nodes]


@pytest.fixture(scope="module")
def google() -> Snapshot:
    return load_taxonomy(shared_file(GOOGLE_JSON), "json")


def test_google_taxonomy_file_gives_5595_nodes(google: Snapshot, tmp_path: Path) -> None:
    assert len(google) == 5595
    text = dump(google, "google")
    assert text.startswith("# Google_Product_Taxonomy_Version: 2021-09-21\n1 - Animals & Pet Supplies\n")
    assert "3237 - Animals & Pet Supplies > Live Animals\n" in text
    (tmp_path / "taxonomy-with-ids.en-US.txt").write_text(text, encoding="utf-8")
    from_text = load_taxonomy(tmp_path / "taxonomy-with-ids.en-US.txt", "google")
    assert len(from_text) == 5595
    assert _graph(from_text) == _graph(google)
    assert from_text.document.source_version == "2021-09-21"
    assert dump(from_text, "google") == text  # export → import → export is stable


def test_shared_levels_and_leaves_agree_with_ours(google: Snapshot) -> None:
    raw = json.loads(shared_file(GOOGLE_JSON).read_text(encoding="utf-8"))["nodes"]
    for node in raw[:: 50]:
        assert google.node(node["id"]).level == node["level"]
        assert google.path_text(node["id"]) == node["path"]
        assert google.is_leaf(node["id"]) == node["is_leaf"]


@pytest.mark.parametrize("relative", [GOOGLE_JSON, SHOPIFY_JSON, "mwpd/taxonomy.json", "flipkart/taxonomy.json"])
def test_json_round_trip_is_exact(relative: str, tmp_path: Path) -> None:
    snap = load_taxonomy(shared_file(relative), "json")
    out = tmp_path / "export.json"
    out.write_text(dump(snap, "json"), encoding="utf-8")
    again = load_taxonomy(out, "json")
    assert again.document == snap.document
    assert dump(again, "json") == dump(snap, "json")


def test_flipkart_attributes_import_as_definitions() -> None:
    snap = load_taxonomy(shared_file("flipkart/taxonomy.json"), "json")
    assert len(snap) == 1098
    ideal_for = snap.attributes["Ideal For"]
    assert ideal_for.value("Women") is not None
    assert str(snap.document.meta["attributes_note"]).startswith("attribute names")


def test_json_round_trip_keeps_everything_we_model(tmp_path: Path) -> None:
    snap = apparel()
    text = dump(snap, "json")
    again = Snapshot(parse_document(text, "json"))
    assert again.document == snap.document
    data = json.loads(text)
    assert data["nodes"][2] == {
        "id": "shirts", "name": "Shirts", "parent": "tops", "level": 3,
        "path": "Apparel > Tops > Shirts", "is_leaf": True,
    }


def test_google_export_skips_deprecated_nodes() -> None:
    text = dump(apparel(), "google")
    assert "old-fruit" not in text
    assert "fruit - Food > Fruit" in text


def test_shopify_flat_file_and_packaged_default(tmp_path: Path) -> None:
    packaged = load_default_taxonomy()
    assert len(packaged) == 10281
    raw = json.loads(gzip.decompress(default_taxonomy_path().read_bytes()))
    assert raw["format"] == "tagsmith-taxonomy" and DEFAULT_TAXONOMY_FORMAT == "json"
    assert "MIT" in raw["source"]
    assert (default_taxonomy_path().parent / "NOTICE").read_text().count("MIT") >= 1
    node = packaged.node("gid://shopify/TaxonomyCategory/ap-2-1")
    assert node.name == "Bird Supplies" and node.meta == {"short_id": "ap-2-1"}
    # the categories are the shared 2024-07 file's, unchanged (the attributes are merged in)
    shared = load_taxonomy(shared_file(SHOPIFY_JSON), "shopify")
    def bare(snap: Snapshot) -> list[Node]:
        return [n.model_copy(update={"attributes": (), "excluded_attributes": ()}) for n in snap.document.nodes]
    assert bare(shared) == bare(packaged)
    assert len(packaged.attributes) == 1966 and not shared.attributes


def test_shopify_upstream_shape(tmp_path: Path) -> None:
    color = {"id": "gid://shopify/TaxonomyAttribute/1", "name": "Color", "handle": "color"}
    upstream = {
        "version": "2024-07",
        "verticals": [{
            "name": "Apparel & Accessories", "prefix": "aa",
            "categories": [
                {"id": "gid://shopify/TaxonomyCategory/aa", "name": "Apparel & Accessories", "level": 0,
                 "parent_id": None, "attributes": [color]},
                {"id": "gid://shopify/TaxonomyCategory/aa-1", "name": "Clothing", "level": 1,
                 "parent_id": "gid://shopify/TaxonomyCategory/aa",
                 "attributes": [color, {"id": "gid://shopify/TaxonomyAttribute/2", "name": "Size"}]},
            ],
        }],
        "attributes": [{**color, "values": [{"id": "gid://shopify/TaxonomyValue/1", "name": "Black"}]}],
    }
    path = tmp_path / "categories.json"
    path.write_text(json.dumps(upstream), encoding="utf-8")
    snap = load_taxonomy(path, "shopify")
    assert snap.path_names("gid://shopify/TaxonomyCategory/aa-1") == ("Apparel & Accessories", "Clothing")
    # inherited attributes are attached once, at the top
    assert snap.node("gid://shopify/TaxonomyCategory/aa-1").attributes == ("gid://shopify/TaxonomyAttribute/2",)
    applicable = {a.name: a for a in snap.attributes_for("gid://shopify/TaxonomyCategory/aa-1")}
    assert set(applicable) == {"Color", "Size"}
    assert applicable["Color"].cardinality == "multi" and not applicable["Color"].open_values
    assert applicable["Size"].open_values  # no value list known


@pytest.mark.parametrize(
    ("text", "format", "message"),
    [
        ("1 - A\n2 - A > B\n3 - X > Y\n", "google", "parent path 'X'"),
        ("1 - A\n1 - A > B\n", "google", "duplicate node id"),
        ("1 - A\n2 - A\n", "google", "appears twice"),
        ("no separator here\n", "google", "line 1"),
        ("{", "json", "not valid JSON"),
        ('{"nodes": [{"id": " x", "name": "X"}]}', "json", "node #0"),
        ('{"items": []}', "shopify", "verticals"),
        ("{}", "xml", "unknown format"),
    ],
)
def test_bad_files_are_clear_errors(text: str, format: str, message: str) -> None:
    with pytest.raises((TaxonomyFormatError, ValueError), match=message):
        Snapshot(parse_document(text, format))


def test_a_files_level_is_a_hint_never_trusted() -> None:
    text = json.dumps({"nodes": [
        {"id": "a", "name": "A", "level": 7},
        {"id": "b", "name": "B", "parent": "a", "level": 2},
        {"id": "c", "name": "C", "parent": "b", "level": "3"},
        {"id": "d", "name": "D", "parent": "b", "level": 0},
        {"id": "e", "name": "E", "parent": "b", "level": True},
    ]})
    snap = Snapshot(parse_document(text, "json"))
    assert [n.level for n in snap.document.nodes] == [1, 2, 3, 3, 3]
    assert all(n.meta == {} for n in snap.document.nodes)  # a derived field, not kept as meta
