"""The ``wdc-pave`` and ``flipkart`` import formats (issue 19, item 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serve.cli import app
from taxonomy import (
    IMPORT_FORMATS,
    Snapshot,
    TaxonomyFormatError,
    dump,
    load_taxonomy,
    parse_document,
)
from taxonomy.formats.wdc_pave import choices_of, normalization_of, value_type_of
from tests.conftest import shared_file

WDC_SCHEMA = "wdc-pave/schema.json"
FLIPKART = "flipkart/taxonomy.json"


def _round_trip(snap: Snapshot) -> None:
    text = dump(snap, "json")
    again = Snapshot(parse_document(text, "json"))
    assert again.document == snap.document
    assert dump(again, "json") == text


def test_formats_are_registered() -> None:
    assert {"wdc-pave", "flipkart"} <= set(IMPORT_FORMATS)


@pytest.mark.parametrize(
    ("raw", "name", "expected"),
    [
        ("Numeric with Unit ", "Capacity", "number_with_unit"),  # trailing space upstream
        ("free Text", "Color", "text"),
        ("None", "Material", "text"),
        (None, "Material", "text"),
        ("Numeric with Decimal", "Retail UPC", "identifier"),  # mistyped upstream: the name decides
        ("Unique Alphanumeric ID", "Model Number", "identifier"),
        ("Name with Numeric", "Generation", "name"),
        ("Something new", "X", "text"),
    ],
)
def test_wdc_pave_types_map_leniently(raw: object, name: str, expected: str) -> None:
    assert value_type_of(raw, name) == expected


def test_wdc_pave_normalization_rules() -> None:
    assert normalization_of("None") is None and normalization_of("") is None
    width = normalization_of("Convert and standardize the Width measurement to centimeters (cm).")
    assert width is not None and (width.kind, width.target_unit) == ("convert_units", "cm")
    part = normalization_of("Remove any non-alphanumeric characters (like hyphens) from the Part Number.")
    assert part is not None and part.kind == "alphanumeric_only"
    brand = normalization_of("Return the Brand in Uppercase Format")
    assert brand is not None and brand.kind == "uppercase" and brand.instruction == "Return the Brand in Uppercase Format"
    assert choices_of("Give it as EXACTLY ONE of the following:\n- A\n-B \n\nIf two, take the first.") == ("A", "B")


@pytest.fixture(scope="module")
def wdc() -> Snapshot:
    return load_taxonomy(shared_file(WDC_SCHEMA), "wdc-pave")


def test_wdc_pave_schema_imports(wdc: Snapshot) -> None:
    assert len(wdc) == 5 and all(n.parent is None for n in wdc.document.nodes)
    assert len(wdc.attributes) == 70
    jewelry = {a.name: a for a in wdc.attributes_for("Jewelry")}
    assert len(jewelry) == 9
    brand = jewelry["Brand"]
    assert brand.id == "Jewelry/Brand" and brand.value_type == "name" and brand.open_values
    assert brand.normalization is not None and brand.normalization.kind == "uppercase"
    assert [v.name for v in jewelry["Product Type"].values] == [
        "Rings/Bands", "Bracelets", "Necklace/Chain", "Earrings", "Miscellaneous"]
    assert jewelry["Product Type"].closed
    # the same name, a different rule per category
    computers = {a.name: a for a in wdc.attributes_for("Computers And Accessories")}
    home = {a.name: a for a in wdc.attributes_for("Home And Garden")}
    assert computers["Manufacturer"].normalization is not None
    assert computers["Manufacturer"].normalization.kind == "expand_names"
    assert home["Manufacturer"].normalization is None
    assert computers["Capacity"].value_type == "number_with_unit"
    assert computers["Capacity"].meta["normalized_type"] == "Numeric with Unit "  # raw label kept
    assert computers["Part Number"].value_type == "identifier"
    assert "Longest Substring" in str(computers["Manufacturer"].meta["annotation_guideline"])
    height = home["Height"]
    assert height.unit == "cm" and height.normalization is not None and height.normalization.target_unit == "cm"
    assert len(home["Color"].values) == 13
    assert wdc.node("Jewelry").description


def test_wdc_pave_attributes_cover_the_records_asked() -> None:
    snap = load_taxonomy(shared_file(WDC_SCHEMA), "wdc-pave")
    names = {(n.id, a.name) for n in snap.document.nodes for a in snap.attributes_for(n.id)}
    with shared_file("wdc-pave/dev.jsonl").open(encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            for asked in record["attributes_asked"]:
                assert (record["category"], asked) in names


def test_wdc_pave_round_trips_through_json(wdc: Snapshot) -> None:
    _round_trip(wdc)


def test_flipkart_taxonomy_imports() -> None:
    snap = load_taxonomy(shared_file(FLIPKART), "flipkart")
    assert len(snap) == 1098
    assert len(snap.attributes) == 91
    assert all(a.open_values for a in snap.attributes.values())
    roots = [n for n in snap.document.nodes if n.parent is None]
    assert all(len(r.attributes) == 91 for r in roots)
    leaf = next(n.id for n in snap.document.nodes if n.id.startswith("fk:Jewellery>"))
    assert {a.name for a in snap.attributes_for(leaf)} == set(snap.attributes)
    ideal_for = snap.attributes["Ideal For"]
    assert ideal_for.cardinality == "multi" and ideal_for.value("Men, Women") is not None
    assert snap.attributes["Pattern"].cardinality == "single"
    assert snap.attributes["Model Number"].value_type == "identifier"
    assert snap.attributes["Heel Height"].value_type == "number_with_unit"
    assert snap.attributes["Brand"].value_type == "name"
    assert snap.attributes["Ideal For"].meta["n_products"] == 417
    _round_trip(snap)


@pytest.mark.parametrize(
    ("text", "format", "message"),
    [
        ('{"nodes": []}', "wdc-pave", "categories"),
        ('{"categories": {"A": {"attributes": [{"description": "no name"}]}}}', "wdc-pave", "invalid WDC-PAVE"),
        ('{"categories": {"A": {"attributes": [{"name": "X"}, {"name": "X"}]}}}', "wdc-pave", "twice"),
        ('{"attributes": []}', "flipkart", "nodes"),
        ('{"nodes": [], "attributes": {}}', "flipkart", "must be a list"),
        ('{"nodes": [], "attributes": [{"values": []}]}', "flipkart", "invalid Flipkart"),
    ],
)
def test_bad_files_are_clear_errors(text: str, format: str, message: str) -> None:
    with pytest.raises(TaxonomyFormatError, match=message):
        parse_document(text, format)


def test_cli_imports_wdc_pave(tmp_path: Path) -> None:
    path = shared_file(WDC_SCHEMA)
    result = CliRunner().invoke(app, ["taxonomy", "import", "wdc-pave", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    assert "imported 5 nodes" in result.stdout
    result = CliRunner().invoke(app, ["taxonomy", "export", "--format", "json"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    exported = json.loads(result.stdout)
    assert len(exported["attributes"]) == 70
