"""One JSON depth limit (limits.max_json_depth) for request bodies and job lines: a document
nested 1,000 or 100,000 deep is a 422 in the one error shape, never a 500 (issue 18, finding 1)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serve.jsonlimits import MAX_JSON_DEPTH, JsonTooDeep, loads, too_deep
from tests.serve.helpers import (
    assert_error,
    auth,
    copy_data_dir,
    make_keys,
    running_app,
    service_settings,
)


def nested(depth: int, kind: str) -> str:
    opening, closing = ("[", "]") if kind == "array" else ('{"a":', "}")
    return opening * depth + "1" + closing * depth


# ---- the scan ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["array", "object"])
def test_the_limit_is_inclusive(kind: str) -> None:
    assert not too_deep(nested(MAX_JSON_DEPTH, kind).encode())
    assert too_deep(nested(MAX_JSON_DEPTH + 1, kind).encode())
    assert too_deep(nested(3, kind).encode(), limit=2) and not too_deep(nested(2, kind).encode(), limit=2)


def test_brackets_inside_strings_do_not_count() -> None:
    deep_text = "[" * 500 + "{" * 500
    assert not too_deep(json.dumps({"title": deep_text, "x": ['a"[[[', "\\"]}).encode())
    # an escaped quote does not end the string; an escaped backslash before a quote does
    assert not too_deep(b'{"a": "\\"' + b"[" * 100 + b'"}')
    assert too_deep(b'{"a": "\\\\"' + b"[" * 100 + b"]" * 100 + b"}")


def test_invalid_documents_count_what_json_loads_would_recurse_into() -> None:
    assert too_deep(b"[" * 100)  # never closed: json.loads recurses 100 deep before failing
    assert not too_deep(b"]" * 1000 + b"[" * 10)
    # a string never closed swallows the rest: json.loads fails there without recursing
    assert not too_deep(b'["unterminated' + b"[" * 100)
    assert too_deep(b"[" * 100 + b'"unterminated')
    hostile = b'"' + b'\\"' * 200_000 + b"[" * 100  # every quote escaped: one long string
    assert not too_deep(hostile) and not too_deep(b"[" + hostile)


def test_loads_checks_before_parsing() -> None:
    assert loads(b'{"a": [1, {"b": "[[["}]}') == {"a": [1, {"b": "[[["}]}
    with pytest.raises(JsonTooDeep, match=f"deeper than {MAX_JSON_DEPTH} levels"):
        loads(nested(100_000, "array").encode())  # json.loads alone: RecursionError
    with pytest.raises(json.JSONDecodeError):
        loads(b"[1,")


# ---- the API ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def env(shop_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    data = copy_data_dir(shop_template, tmp_path_factory.mktemp("depth") / "data")
    keys = make_keys(data)
    with running_app(service_settings(data)) as client:
        yield client, keys


@pytest.mark.parametrize("depth", [1000, 100_000])
@pytest.mark.parametrize("kind", ["array", "object"])
def test_a_deep_body_is_a_422_naming_the_limit(env: tuple[TestClient, dict[str, str]], depth: int, kind: str) -> None:
    client, keys = env
    for path, body in [
        ("/v1/tags", nested(depth, kind)),
        ("/v1/tags", f'{{"title": "x", "attributes": {nested(depth, kind)}}}'),
        ("/v1/tags:batch", f'{{"products": [{nested(depth, kind)}]}}'),
    ]:
        for content_type in ("application/json", None):
            headers = {**auth(keys["tags"]), **({"content-type": content_type} if content_type else {})}
            error = assert_error(client.post(path, content=body.encode(), headers=headers), 422, "validation_error")
            assert f"deeper than {MAX_JSON_DEPTH} levels" in error["message"]
            assert error["details"] == [{"loc": ["body"], "message": error["details"][0]["message"], "type": "json_too_deep"}]


def test_a_body_within_the_limit_is_parsed_as_before(env: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = env
    t = {**auth(keys["tags"]), "content-type": "application/json"}
    assert client.post("/v1/tags", json={"title": "Cast iron skillet"}, headers=t).status_code == 200
    # as deep as allowed: parsed, then refused by the model (a title is a string), not by depth
    body = f'{{"title": {nested(MAX_JSON_DEPTH - 1, "array")}}}'
    error = assert_error(client.post("/v1/tags", content=body, headers=t), 422, "validation_error")
    assert error["details"][0]["loc"] == ["body", "title"] and error["details"][0]["type"] != "json_too_deep"


@pytest.mark.parametrize("depth", [1000, 100_000])
@pytest.mark.parametrize("kind", ["array", "object"])
def test_a_deep_job_line_is_a_422_naming_the_line(env: tuple[TestClient, dict[str, str]], depth: int, kind: str) -> None:
    client, keys = env
    t = auth(keys["tags"])
    good = json.dumps({"custom_id": "a", "product": {"title": "Wool socks"}})
    body = f'{good}\n{{"custom_id": "b", "product": {nested(depth, kind)}}}\n'
    before = client.get("/v1/jobs", headers=t).json()["total"]
    error = assert_error(client.post("/v1/jobs", content=body.encode(), headers=t), 422, "invalid_job_input")
    assert error["details"][0]["loc"] == ["line", 2]
    assert f"deeper than {MAX_JSON_DEPTH} levels" in error["details"][0]["message"]
    assert client.get("/v1/jobs", headers=t).json()["total"] == before


def test_a_job_line_within_the_limit_is_checked_by_the_model(env: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = env
    t = auth(keys["tags"])
    line = {"custom_id": "a", "product": {"title": "Wool socks", "attributes": json.loads(nested(MAX_JSON_DEPTH - 2, "object"))}}
    error = assert_error(client.post("/v1/jobs", content=json.dumps(line).encode(), headers=t), 422, "invalid_job_input")
    assert error["details"][0]["loc"][:4] == ["line", 1, "product", "attributes"]
    assert "deeper" not in error["details"][0]["message"]
