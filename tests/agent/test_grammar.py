"""The compact grammar accepts exactly the JSON the schema allows, with no whitespace."""

from __future__ import annotations

import json
from typing import Any

import pytest
from llama_cpp import LlamaGrammar

from agent.llm import tags_schema
from agent.llm.grammar import compact_gbnf


@pytest.mark.parametrize(
    "ids",
    [["A", "B"], ["with space", 'quo"te', "back\\slash", "ünï", "gid://shopify/TaxonomyCategory/aa-1"]],
)
def test_compact_grammar_compiles_in_llama_cpp(ids: list[str]) -> None:
    gbnf = compact_gbnf(tags_schema(ids, max_items=3))
    assert gbnf is not None
    for value in ids:
        assert json.dumps(json.dumps(value, ensure_ascii=False), ensure_ascii=False) in gbnf
    LlamaGrammar.from_string(gbnf, verbose=False)


def test_array_bounds_are_encoded() -> None:
    one = compact_gbnf(tags_schema(["A"], max_items=1))
    three = compact_gbnf(tags_schema(["A"], max_items=3))
    assert one is not None and three is not None
    assert "{0," not in one and "{0,2}" in three
    schema: dict[str, Any] = tags_schema(["A"], max_items=2)
    schema["properties"]["tags"]["minItems"] = 0
    optional = compact_gbnf(schema)
    assert optional is not None and ")?" in optional


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string"},
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
        {"type": "object", "properties": {"a": {"enum": ["x"]}}, "required": []},
        {"type": "object", "properties": {"a": {"enum": [1, 2]}}, "required": ["a"]},
    ],
)
def test_other_shapes_fall_back(schema: dict[str, Any]) -> None:
    assert compact_gbnf(schema) is None


def test_empty_enum_is_refused() -> None:
    with pytest.raises(ValueError):
        tags_schema([])
