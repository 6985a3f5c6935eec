from __future__ import annotations

from typing import Any

import pytest

from taxonomy import AddNode, ProposedTag, TagValidator, apply_edits
from tests.taxonomy.helpers import apparel


def rules(report: Any) -> list[tuple[int, str]]:
    return [(e.index, e.rule) for e in report.errors]


def test_accepts_active_ids_and_reports_every_problem() -> None:
    snap = apparel()
    report = TagValidator().validate(snap, ["shirts", "tops", "old-fruit", "Shirts", "nope", "shirts"])
    assert report.accepted == ["shirts", "tops"]
    assert not report.ok
    assert rules(report) == [(2, "deprecated"), (3, "unknown_id"), (4, "unknown_id"), (5, "duplicate")]
    assert report.errors[0].suggestion == "fruit"
    assert report.errors[1].suggestion == "shirts"
    assert report.errors[2].suggestion is None


def test_leaf_only() -> None:
    report = TagValidator(leaf_only=True).validate(apparel(), ["tops", "shirts"])
    assert rules(report) == [(0, "not_leaf")] and report.accepted == ["shirts"]


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ("SHIRTS", "shirts"), (" shirts", "shirts"), ("shirts\t", "shirts"), ("sh irts", "shirts"),
        ("ѕhirts", "shirts"),  # Cyrillic dze
        ("ｓｈｉｒｔｓ", "shirts"),  # full width
        ("shirts\u200b", "shirts"),  # zero-width space
        ("t‐shirts", "tshirts"),  # Unicode hyphen in the name "T-Shirts"
        ("T-Shirts", "tshirts"),  # a name instead of an id
        ("tees", "tshirts"),  # a synonym
    ],
)
def test_near_misses_are_rejected_with_a_suggestion(given: str, meant: str | None) -> None:
    report = TagValidator().validate(apparel(), [given])
    assert report.accepted == [] and rules(report) == [(0, "unknown_id")]
    assert report.errors[0].suggestion == meant


def test_ids_of_another_version_are_rejected() -> None:
    newer = apply_edits(apparel(), [AddNode(id="polos", name="Polos", parent="tops")], version=2)
    assert TagValidator().validate(newer, ["polos"]).ok
    report = TagValidator().validate(apparel(), ["polos"])
    assert rules(report) == [(0, "unknown_id")] and report.snapshot_version == 0


def test_paths() -> None:
    v = TagValidator(leaf_only=True)
    snap = apparel()
    assert v.validate_path(snap, ["apparel", "tops", "shirts"]).ok
    assert rules(v.validate_path(snap, ["tops", "shirts"])) == [(0, "path_inconsistent")]
    assert rules(v.validate_path(snap, ["apparel", "shirts"])) == [(1, "path_inconsistent")]
    assert rules(v.validate_path(snap, ["apparel", "tops"])) == [(1, "not_leaf")]
    assert rules(v.validate_path(snap, ["food", "tops", "shirts"])) == [(1, "path_inconsistent")]
    assert rules(v.validate_path(snap, [])) == [(-1, "malformed")]
    report = v.validate(snap, [ProposedTag(id="shirts", path=("apparel", "shirts"))])
    assert rules(report) == [(0, "path_inconsistent")]
    assert v.validate(snap, [{"id": "shirts", "path": ["apparel", "tops", "shirts"]}]).ok


def test_attribute_rules() -> None:
    v = TagValidator()
    snap = apparel()
    ok = v.validate(snap, [{"id": "shoes", "attributes": [
        {"attribute": "size", "values": ["42"]},
        {"attribute": "color", "values": ["red", "blue"]},
        {"attribute": "brand", "values": ["Any Brand Inc."]},
    ]}])
    assert ok.ok, ok.errors
    assert ok.accepted_attributes == {"shoes": {"size": ["42"], "color": ["red", "blue"], "brand": ["Any Brand Inc."]}}
    bad = v.validate(snap, [
        {"id": "shirts", "attributes": [
            {"attribute": "size", "values": ["42"]},  # shoes only
            {"attribute": "colour", "values": ["red"]},
            {"attribute": "color", "values": ["Red", "red"]},
        ]},
        {"id": "shoes", "attributes": [{"attribute": "size", "values": ["42", "43"]}]},
        {"id": "fruit", "attributes": [{"attribute": "color", "values": ["red"]}]},
        {"id": "shoes", "attributes": [{"attribute": "size", "values": []}]},
    ])
    assert rules(bad) == [
        (0, "attribute_not_applicable"), (0, "unknown_attribute"), (0, "value_not_allowed"),
        (1, "cardinality"), (2, "attribute_not_applicable"), (3, "duplicate"),
    ]
    assert bad.errors[2].suggestion == "red" and bad.errors[2].attribute == "color"
    assert bad.accepted == ["shirts", "shoes", "fruit"]  # category rules passed
    assert bad.accepted_attributes == {"shirts": {"color": ["red"]}}


@pytest.mark.parametrize("junk", [None, 42, [None], [{"idd": "x"}], [["shirts"]], object()])
def test_never_raises_on_junk(junk: Any) -> None:
    report = TagValidator().validate(apparel(), junk)
    assert not report.ok and report.errors[0].rule == "malformed"


def test_a_single_id_is_one_tag() -> None:
    assert TagValidator().validate(apparel(), "shirts").accepted == ["shirts"]


def test_deprecated_attributes_and_values_are_refused_for_new_tags() -> None:
    from taxonomy import DeprecateAttribute, DeprecateAttributeValue

    snap = apply_edits(apparel(), [DeprecateAttributeValue(attribute="color", id="blue"),
                                   DeprecateAttribute(id="brand")])
    report = TagValidator().validate(snap, [{"id": "shirts", "attributes": [
        {"attribute": "color", "values": ["red", "blue"]},
        {"attribute": "brand", "values": ["Acme"]},
    ]}])
    assert rules(report) == [(0, "value_not_allowed"), (0, "attribute_not_applicable")]
    assert "deprecated" in report.errors[0].message and "deprecated" in report.errors[1].message
    assert report.accepted_attributes == {"shirts": {"color": ["red"]}}
