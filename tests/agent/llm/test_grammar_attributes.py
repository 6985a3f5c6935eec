"""The compact grammar for attribute answers: enums with "none", bounded arrays of enums,
length-bounded strings without escapes; whitespace-free, and llama.cpp compiles it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from llama_cpp import LlamaGrammar

from agent.llm.base import object_schema
from agent.llm.grammar import CHAR_RULE, compact_gbnf

ATTRIBUTE_SCHEMA = object_schema({
    "Color": {"type": "array", "items": {"type": "string", "enum": ["Black", "Blue", 'Quo"te']},
              "minItems": 0, "maxItems": 3},
    "Target gender": {"type": "string", "enum": ["Male", "Female", "none"]},
    "Brand": {"type": "string", "maxLength": 40},
    "Size": {"type": "array", "items": {"type": "string", "maxLength": 24}, "minItems": 0, "maxItems": 2},
})


def test_attribute_schema_compiles_without_whitespace() -> None:
    gbnf = compact_gbnf(ATTRIBUTE_SCHEMA)
    assert gbnf is not None
    LlamaGrammar.from_string(gbnf, verbose=False)
    root = gbnf.splitlines()[0]
    assert root == (
        'root ::= "{" "\\"Color\\":" p0 ",\\"Target gender\\":" p1 ",\\"Brand\\":" p2 '
        '",\\"Size\\":" p3 "}"'
    )
    rules = dict(line.split(" ::= ", 1) for line in gbnf.strip().splitlines())
    assert rules["p0"] == '"[" (p0-item ("," p0-item){0,2})? "]"'
    assert rules["p1"] == '("\\"Male\\"" | "\\"Female\\"" | "\\"none\\"")'
    assert rules["p2"] == f'"\\"" {CHAR_RULE}{{0,40}} "\\""'
    assert rules["p3-item"] == f'"\\"" {CHAR_RULE}{{0,24}} "\\""'
    assert rules[CHAR_RULE] == '[^"\\\\\\x00-\\x1F\\x7F]'
    assert json.dumps(json.dumps('Quo"te')) in rules["p0-item"]


@pytest.mark.parametrize(
    ("prop", "body"),
    [
        ({"type": "string", "maxLength": 0}, '"\\"" "\\""'),
        ({"type": "string", "minLength": 2, "maxLength": 5}, f'"\\"" {CHAR_RULE}{{2,5}} "\\""'),
    ],
)
def test_string_bounds(prop: dict[str, Any], body: str) -> None:
    gbnf = compact_gbnf(object_schema({"a": prop}))
    assert gbnf is not None and f"p0 ::= {body}" in gbnf
    LlamaGrammar.from_string(gbnf, verbose=False)


@pytest.mark.parametrize(
    "prop",
    [
        {"type": "string"},  # unbounded: llama.cpp's converter
        {"type": "string", "maxLength": 10, "pattern": "^[a-z]+$"},
        {"type": "string", "maxLength": 3, "minLength": 5},
        {"type": "string", "maxLength": True},
        {"type": "array", "items": {"type": "string"}, "maxItems": 2},
    ],
)
def test_shapes_it_cannot_honour_fall_back(prop: dict[str, Any]) -> None:
    assert compact_gbnf(object_schema({"a": prop})) is None


def test_object_schema_requires_every_property_in_order() -> None:
    schema = object_schema({"b": {"enum": ["x"]}, "a": {"enum": ["y"]}})
    assert schema["required"] == ["b", "a"] and schema["additionalProperties"] is False
    with pytest.raises(ValueError):
        object_schema({})
