"""Attribute extraction on a small synthetic catalog: matching with spans, learning from
examples (surfaces, shapes, normalization), the ranker, the validator's grounding rule,
the LLM step's merge, and the Tagger's contract."""

from __future__ import annotations

import random

import pytest

from agent.attributes import AttributeExtractor, ProductText, selected_attributes
from agent.attributes.normalize import ValueNormalizer, parse_quantity
from agent.attributes.text import coarse_shape_of, shape_of, tokens_of
from agent.llm.fake import ScriptedBackend
from retrieval.examples import Example
from taxonomy import Snapshot
from taxonomy.grounding import AttributeClaim, validate_attribute_claims
from taxonomy.model import Attribute, AttributeValue, Node, Normalization, TaxonomyDocument

COLORS = ("Red", "Blue", "Black", "White", "Green")


def _snapshot() -> Snapshot:
    color = Attribute(
        id="color", name="Color",
        values=tuple(AttributeValue(id=f"c-{c.lower()}", name=c, synonyms=(("Navy",) if c == "Blue" else ()))
                     for c in COLORS),
    )
    gender = Attribute(id="gender", name="Target gender", values=(
        AttributeValue(id="male", name="Male", synonyms=("men's", "mens")),
        AttributeValue(id="female", name="Female", synonyms=("women's",)),
    ))
    part = Attribute(id="part", name="Part Number", open_values=True, value_type="identifier",
                     normalization=Normalization(kind="alphanumeric_only"))
    width = Attribute(id="width", name="Width", open_values=True, value_type="number", unit="cm",
                      normalization=Normalization(kind="convert_units", target_unit="cm"))
    old = Attribute(id="old", name="Old", deprecated=True, values=(AttributeValue(id="x", name="Red"),))
    doc = TaxonomyDocument(
        name="t",
        nodes=(
            Node(id="apparel", name="Apparel", attributes=("color", "gender", "old")),
            Node(id="shirts", name="Shirts", parent="apparel", level=2),
            Node(id="parts", name="Parts", attributes=("part", "width", "color")),
        ),
        attributes=(color, gender, part, width, old),
    )
    return Snapshot(doc, version=3)


def _parts_examples(n: int = 120, seed: int = 1) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        pn = f"{rng.randint(100000, 999999)}-B{rng.randint(10, 99)}"
        inches = rng.choice([2, 3, 4, 6, 8, 10, 12])
        color = rng.choice(COLORS)
        noise = rng.choice(["bracket", "mount kit", "power cable", "fan tray", "rail set"])
        title = f"{pn} Acme {noise} {inches}\" wide {color.lower()} model {rng.randint(10, 99)}"
        values = {"part": (pn.replace("-", ""),), "width": (f"{inches * 2.54:.1f}",),
                  "color": (f"c-{color.lower()}",)}
        mentions = {"part": (pn,), "width": (f'{inches}"',), "color": (color.lower(),)}
        out.append(Example(f"p{i}", title, "", ("parts",), {}, "", values, mentions))
    return out


def test_tokens_shapes_and_quantities() -> None:
    assert tokens_of("535683-B21") == ("535683", "-", "b", "21")
    assert shape_of("535683-B21") == "9-Aa9" and coarse_shape_of(shape_of("KR18-RG12")) == "X-X"
    assert parse_quantity('4 3/4"') == (4.75, '"')
    assert parse_quantity("47-1/4") == (47.25, "")
    text = ProductText.of("Levi's men's jeans", "dark NAVY denim")
    match = text.locate("navy")
    assert match is not None and match.field == "description" and match.text == "NAVY"
    assert text.grounded("description", match.span, "navy")
    assert not text.whole(0, 1, 1) or text.fields[0].tokens[1].text == "'"


def test_normalizer_learns_exact_templates_ratios_and_cuts() -> None:
    snap = _snapshot()
    width, part = snap.attributes["width"], snap.attributes["part"]
    cap = Attribute(id="cap", name="Capacity", open_values=True, value_type="number_with_unit")
    upc = Attribute(id="upc", name="UPC", open_values=True, value_type="identifier")
    n = ValueNormalizer().learn([
        ("width", '4"', "10.2"), ("width", '10"', "25.4"), ("width", "12", "30.5"),
        ("cap", "120GB", "120 Gigabytes"), ("cap", "HP", "Hewlett-Packard"),
        ("upc", "025932384141", "25932"), ("upc", "069775440312", "69775"), ("upc", "033297931115", "33297"),
    ])
    assert n.normalize(width, '7"') == "17.8"
    assert n.normalize(width, "8 1/2") == "21.6"
    assert n.normalize(cap, "500GB") == "500 Gigabytes"
    assert n.normalize(cap, "hp") == "Hewlett-Packard"
    assert n.normalize(upc, "077914041641") == "77914"
    assert n.normalize(part, "583718-001") == "583718001"  # the rule, never a ratio


def test_extractor_learns_identifiers_units_and_closed_values() -> None:
    snap = _snapshot()
    pool = _parts_examples()
    ext = AttributeExtractor.fit(snap, pool[:100])
    assert ext.ranker.trained
    right = total = 0
    for ex in pool[100:]:
        tags = ext.extract(snap, ProductText.of(ex.title), "parts")
        got = {t.attribute: t.values[0].value for t in tags}
        for attr, values in ex.attribute_values.items():
            total += 1
            want = snap.attributes[attr].value(values[0])
            right += got.get(attr) == (want.name if want is not None else values[0])
    assert right / total >= 0.9, (right, total)


def test_values_carry_spans_the_validator_accepts_and_nothing_off_schema() -> None:
    snap = _snapshot()
    ext = AttributeExtractor.fit(snap, [])  # no labelled examples: taxonomy names only
    assert not ext.ranker.trained
    text = ProductText.of("Men's navy oxford shirt", "Red buttons")
    tags = ext.extract(snap, text, "shirts")
    got = {t.attribute: t for t in tags}
    assert set(got) <= {"color", "gender"}  # never the deprecated attribute, never Part Number
    gender = got["gender"].values[0]
    assert gender.value_id == "male" and gender.value == "Male"
    assert gender.evidence.source == "text" and gender.evidence.field == "title"
    assert gender.evidence.span is not None
    a, b = gender.evidence.span
    assert text.field("title").text[a:b].lower().startswith("men")  # type: ignore[union-attr]
    assert got["color"].values[0].value in {"Blue", "Red"}
    dumped = got["color"].model_dump(mode="json")
    assert dumped["values"][0]["evidence"]["from"] == "text"


def test_selection_off_on_and_named() -> None:
    snap = _snapshot()
    assert selected_attributes(snap, "shirts", "off") == ()
    assert {a.id for a in selected_attributes(snap, "shirts", "on")} == {"color", "gender"}
    assert [a.id for a in selected_attributes(snap, "shirts", ["target GENDER"])] == ["gender"]
    assert [a.id for a in selected_attributes(snap, "shirts", ["color", "part"])] == ["color"]


@pytest.mark.parametrize(
    ("claim", "rule"),
    [
        (AttributeClaim("nope", None, "x"), "unknown_attribute"),
        (AttributeClaim("part", None, "X1", "title", (0, 2), "X1"), "attribute_not_applicable"),
        (AttributeClaim("old", "x", "Red"), "attribute_not_applicable"),
        (AttributeClaim("color", "c-purple", "Purple"), "value_not_allowed"),
        (AttributeClaim("color", "c-red", "Blue"), "malformed"),
    ],
)
def test_grounding_validator_refuses(claim: AttributeClaim, rule: str) -> None:
    report = validate_attribute_claims(_snapshot(), "shirts", [claim], {"title": "X1 red shirt"})
    assert not report.ok and report.errors[0].rule == rule


def test_open_values_must_be_grounded_in_a_span() -> None:
    snap = _snapshot()
    fields = {"title": "535683-B21 fan tray"}
    ok = AttributeClaim("part", None, "535683B21", "title", (0, 10), "535683-B21")
    assert validate_attribute_claims(snap, "parts", [ok], fields).ok
    for bad in (
        AttributeClaim("part", None, "999999B21"),  # no span: a guess
        AttributeClaim("part", None, "535683B21", "title", (0, 10), "999999-B21"),  # not what is there
        AttributeClaim("part", None, "535683B21", "title", (5, 99), "535683-B21"),  # out of range
        AttributeClaim("part", None, "535683B21", "description", (0, 10), "535683-B21"),
    ):
        assert validate_attribute_claims(snap, "parts", [bad], fields).errors[0].rule == "ungrounded"


def test_llm_answers_only_adjust_validated_candidates() -> None:
    snap = _snapshot()
    ext = AttributeExtractor.fit(snap, [])
    text = ProductText.of("Oxford shirt for men", "colour: green")
    # the LLM names Green (in the text) and an off-list colour; only Green survives
    llm = ScriptedBackend(['{"Color":["Green","Purple"],"Target gender":"Male"}'])
    tags, answer = ext.extract_with_llm(snap, text, "shirts", llm=llm)
    assert answer is not None and answer.attempts >= 1
    got = {t.attribute: [v.value for v in t.values] for t in tags}
    assert got.get("color") == ["Green"] and got.get("gender") == ["Male"]
    for t in tags:
        for v in t.values:
            assert v.value_id is not None and snap.attributes[t.attribute].value(v.value_id) is not None
