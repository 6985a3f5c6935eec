"""The client's operations are the app's: every path, method, success status, query parameter
and request / response model the client uses is what the app's OpenAPI schema publishes (so the
client's models cannot drift from the service's), and every operation of the schema is either
in the client or named here as left out."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from serve.app import create_app
from serve.client.calls import OPERATIONS
from tests.serve.helpers import service_settings

#: operations the client does not offer (administration, crosswalks, probes for machines)
NOT_IN_CLIENT = {
    ("GET", "/healthz"), ("GET", "/metrics"),
    ("GET", "/v1/keys"), ("POST", "/v1/keys"), ("DELETE", "/v1/keys/{key_id}"),
}


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    app = create_app(service_settings(tmp_path_factory.mktemp("openapi") / "data"))
    schema: dict[str, Any] = app.openapi()
    return schema


def component(openapi: dict[str, Any], ref: str) -> tuple[str, dict[str, Any]]:
    name = ref.rsplit("/", 1)[-1]
    schema: dict[str, Any] = openapi["components"]["schemas"][name]
    return name.removesuffix("-Output").removesuffix("-Input"), schema


def assert_same_model(openapi: dict[str, Any], ref: str, model: type[BaseModel], mode: str) -> None:
    """Same name, fields and required fields, for the model and every model it nests."""
    name, published = component(openapi, ref)
    assert name == model.__name__, (ref, model)
    ours = model.model_json_schema(mode=mode, ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
    for nested_name, nested in [(model.__name__, ours), *ours.get("$defs", {}).items()]:
        candidates = [s for n, s in openapi["components"]["schemas"].items()
                      if n.removesuffix("-Output").removesuffix("-Input") == nested_name]
        assert candidates, f"{nested_name} (in {model.__name__}) is not in the app's schema"
        if "properties" not in nested:
            continue
        assert any(
            set(c.get("properties", {})) == set(nested["properties"]) and set(c.get("required", [])) == set(nested.get("required", []))
            for c in candidates
        ), f"{nested_name}: the client's fields {sorted(nested['properties'])} differ from the app's"
    assert set(published.get("properties", {})) == set(ours.get("properties", {}))


def test_every_client_operation_is_the_apps(openapi: dict[str, Any]) -> None:
    for name, op in OPERATIONS.items():
        operation = openapi["paths"].get(op.path, {}).get(op.method.lower())
        assert operation is not None, f"{name}: {op.method} {op.path} is not an operation of the app"
        assert str(op.status) in operation["responses"], (name, op.status)
        query = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        assert set(op.query) == query, f"{name}: the client sends {sorted(op.query)}, the app takes {sorted(query)}"
        if op.response is not None:
            ref = operation["responses"][str(op.status)]["content"]["application/json"]["schema"]["$ref"]
            assert_same_model(openapi, ref, op.response, "serialization")
        if op.body is not None:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]
            ref = ref.get("$ref") or next(s["$ref"] for s in ref["anyOf"] if "$ref" in s)
            assert_same_model(openapi, ref, op.body, "validation")
        elif op.method in ("POST", "PUT") and op.path != "/v1/jobs":
            body = operation.get("requestBody")
            assert body is None or not body.get("required"), f"{name}: the app requires a body the client does not send"


def test_every_operation_of_the_app_is_in_the_client_or_left_out_on_purpose(openapi: dict[str, Any]) -> None:
    ours = {(op.method, op.path) for op in OPERATIONS.values()}
    published = {(method.upper(), path) for path, ops in openapi["paths"].items() for method in ops}
    crosswalks = {(m, p) for m, p in published if p.startswith("/v1/crosswalks")}
    missing = published - ours - NOT_IN_CLIENT - crosswalks
    assert not missing, f"operations of the app the client lacks: {sorted(missing)}"
    assert not (ours - published), sorted(ours - published)

