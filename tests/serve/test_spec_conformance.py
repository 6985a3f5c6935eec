"""The OpenAPI document says what the server enforces (issue 18, finding 7): 405s list every
method of the path, blank titles are blank by one definition on both sides, an edit's ``op``
is required, and the job body has a media type standard clients can send."""

from __future__ import annotations

import re
from pathlib import Path

from agent.contract import BLANK, NOT_BLANK
from tests.serve.helpers import assert_error, auth, make_keys, running_app, service_settings


def test_405_allow_lists_every_method_of_the_path(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    with running_app(service_settings(shop_dir)) as client:
        paths = client.get("/openapi.json").json()["paths"]
        h = auth(keys["admin"])
        for method, path, template in [
            ("OPTIONS", "/v1/jobs", "/v1/jobs"), ("PUT", "/v1/jobs", "/v1/jobs"),
            ("POST", "/v1/jobs/abc", "/v1/jobs/{job_id}"), ("DELETE", "/v1/taxonomy", "/v1/taxonomy"),
            ("PATCH", "/v1/keys/k1", "/v1/keys/{key_id}"),
        ]:
            response = client.request(method, path, headers=h)
            assert_error(response, 405, "method_not_allowed")
            allowed = sorted(m.strip() for m in response.headers["allow"].split(","))
            assert allowed == sorted(m.upper() for m in paths[template]), (method, path, allowed)
        assert client.request("OPTIONS", "/v1/jobs", headers=h).headers["allow"] == "GET, POST"


def test_blank_is_one_definition_in_schema_and_server(shop_dir: Path) -> None:
    # the server's blank set is exactly Python's whitespace, and the schema's pattern refuses
    # exactly those characters (no ECMA \s, which lacks U+0085 and U+001C-U+001F)
    assert set(BLANK) == {chr(c) for c in range(0x110000) if chr(c).isspace()}
    assert all(re.fullmatch(NOT_BLANK, chr(c)) is None for c in map(ord, BLANK))
    assert "\\s" not in NOT_BLANK
    keys = make_keys(shop_dir)
    with running_app(service_settings(shop_dir)) as client:
        title = client.get("/openapi.json").json()["components"]["schemas"]["Product"]["properties"]["title"]
        assert (title["minLength"], title["maxLength"], title["pattern"]) == (1, 1000, NOT_BLANK)
        h = auth(keys["tags"])
        for blank in [" ", "\u0085", "\u0085 \u3000\t", "\x1c"]:  # schema-invalid, and refused
            assert re.search(title["pattern"], blank) is None
            assert_error(client.post("/v1/tags", json={"title": blank}, headers=h), 422, "validation_error")
        # the length is that of the value as sent, as the schema says: 1,001 is too long
        assert_error(client.post("/v1/tags", json={"title": "\u0085" + "x" * 1000}, headers=h), 422, "validation_error")
        ok = client.post("/v1/tags", json={"id": " p1\u0085", "title": "\u0085 cast iron skillet " + "x" * 978}, headers=h)
        assert ok.status_code == 200, ok.text
        assert ok.json()["id"] == "p1"  # blank at the ends is stripped after validation


def test_edit_op_is_required_in_the_schema(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    with running_app(service_settings(shop_dir)) as client:
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
        edits = [name for name, s in schemas.items() if "op" in s.get("properties", {})]
        assert len(edits) >= 14
        for name in edits:
            assert "op" in schemas[name]["required"], name
            assert "default" not in schemas[name]["properties"]["op"], name
        no_op = {"edits": [{"id": "toys/kites", "name": "Kites", "parent": "toys"}]}
        w = {**auth(keys["taxonomy:write"]), "If-Match": "*"}
        assert_error(client.post("/v1/taxonomy/edits", json=no_op, headers=w), 422, "validation_error")


def test_job_body_is_declared_as_text(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    with running_app(service_settings(shop_dir)) as client:
        operation = client.get("/openapi.json").json()["paths"]["/v1/jobs"]["post"]
        assert list(operation["requestBody"]["content"]) == ["text/plain"]
        links = operation["responses"]["202"]["links"]
        assert {link["parameters"]["job_id"] for link in links.values()} == {"$response.body#/id"}
        line = '{"custom_id": "a", "product": {"title": "Cast iron skillet"}}\n'
        for content_type in ("text/plain", "application/jsonl", "application/x-ndjson"):
            created = client.post("/v1/jobs", content=line.encode(), headers={
                **auth(keys["tags"]), "Content-Type": content_type})
            assert created.status_code == 202, (content_type, created.text)
