"""Attribute tags over HTTP, in jobs, in the CLI, and from feedback (issue 19): one contract
everywhere, ``attributes`` on / off / named, unknown names refused only when none exists,
needs_review from low-confidence values, corrected values learned at once (shop taxonomy
with Color, Material, Brand and Size; knn and the hashing embedder)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from agent.contract import TagResult
from tests.serve.helpers import (
    assert_error,
    auth,
    copy_data_dir,
    make_keys,
    running_app,
    service_settings,
)

TEE = {"id": "sku-1", "title": "Black cotton crew neck t-shirt", "description": "soft wool blend"}
SHOES = {"id": "sku-2", "title": "Leather running shoes size 44 black"}


def named(result: dict[str, Any]) -> dict[str, list[str]]:
    """attribute name -> value names of a result."""
    return {a["name"]: [v["value"] for v in a["values"]] for a in result["attributes"]}


@pytest.fixture(scope="module")
def env(attrs_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    data = copy_data_dir(attrs_template, tmp_path_factory.mktemp("attrs") / "data")
    keys = make_keys(data)
    with running_app(service_settings(data, jobs={"batch_size": 3})) as client:
        yield client, keys


@pytest.fixture
def client(env: tuple[TestClient, dict[str, str]]) -> TestClient:
    return env[0]


@pytest.fixture
def tags_key(env: tuple[TestClient, dict[str, str]]) -> dict[str, str]:
    return auth(env[1]["tags"])


def test_attributes_are_tagged_by_default_with_their_evidence(client: TestClient, tags_key: dict[str, str]) -> None:
    r = client.post("/v1/tags", json=TEE, headers=tags_key)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tags"][0]["id"] == "apparel/tops/tees"
    assert named(body) == {"Color": ["Black"], "Material": ["Cotton", "Wool"]}
    color = body["attributes"][0]
    assert color["attribute"] == "color"
    (value,) = color["values"]
    assert value["value_id"] == "color/black" and 0 < value["confidence"] <= 1
    # the evidence says where the value was read: "from" on the wire, the span in its field
    assert value["evidence"] == {"span": [0, 5], "field": "title", "from": "text", "text": "Black"}
    TagResult.model_validate(body)  # the agent's contract, as the CLI and jobs write it


def test_attributes_off_on_and_named(client: TestClient, tags_key: dict[str, str]) -> None:
    def ask(query: str) -> dict[str, list[str]]:
        r = client.post(f"/v1/tags{query}", json=TEE, headers=tags_key)
        assert r.status_code == 200, r.text
        return named(r.json())

    assert ask("?attributes=off") == {}
    assert ask("?attributes=on") == ask("") == {"Color": ["Black"], "Material": ["Cotton", "Wool"]}
    assert ask("?attributes=Color") == {"Color": ["Black"]}
    assert ask("?attributes=%20material%20") == {"Material": ["Cotton", "Wool"]}  # names: case, blank ends
    assert ask("?attributes=color") == {"Color": ["Black"]}  # an id
    assert ask("?attributes=Color&attributes=Material") == {"Color": ["Black"], "Material": ["Cotton", "Wool"]}
    # a name the chosen category does not have (Size: shoes only) is skipped, not an error
    assert ask("?attributes=Size&attributes=Color") == {"Color": ["Black"]}
    assert ask("?attributes=Size") == {}
    # "on" among names is just a name (none called that): the names decide
    assert ask("?attributes=on&attributes=Color") == {"Color": ["Black"]}


def test_unknown_attribute_names_are_422_only_when_none_exists(client: TestClient, tags_key: dict[str, str]) -> None:
    error = assert_error(client.post("/v1/tags?attributes=Colour&attributes=Fabric", json=TEE, headers=tags_key),
                         422, "unknown_attributes")
    assert "'Colour', 'Fabric'" in error["message"] and "GET /v1/taxonomy/attributes" in error["message"]
    assert error["details"][0]["loc"] == ["query", "attributes"]
    assert client.post("/v1/tags?attributes=Colour&attributes=Color", json=TEE, headers=tags_key).status_code == 200
    assert_error(client.post("/v1/tags:batch?attributes=Colour", json={"products": [TEE]}, headers=tags_key),
                 422, "unknown_attributes")
    # the schema's bounds: at most 100 names, each 1-200 characters with a non-blank one
    for query in ["?attributes=" + "x" * 201, "?" + "&".join(["attributes=Color"] * 101), "?attributes=%20"]:
        assert_error(client.post(f"/v1/tags{query}", json=TEE, headers=tags_key), 422, "validation_error")


def test_batch_applies_the_selection_to_every_product(client: TestClient, tags_key: dict[str, str]) -> None:
    body = {"products": [TEE, SHOES]}
    r = client.post("/v1/tags:batch?attributes=Material&attributes=Size", json=body, headers=tags_key)
    assert r.status_code == 200, r.text
    tee, shoes = r.json()["results"]
    assert shoes["tags"][0]["id"] == "apparel/shoes"
    assert named(tee) == {"Material": ["Cotton", "Wool"]}
    # Size (open) is not read without examples that teach it: left out, never guessed
    assert named(shoes) == {"Material": ["Leather"]}
    off = client.post("/v1/tags:batch?attributes=off", json=body, headers=tags_key).json()["results"]
    assert [res["attributes"] for res in off] == [[], []]


def test_needs_review_reflects_low_confidence_attribute_values(attrs_dir: Path) -> None:
    keys = make_keys(attrs_dir)
    settings = service_settings(attrs_dir, tagging={"attribute_review_threshold": 0.99})
    with running_app(settings) as client:
        t = auth(keys["tags"])
        on = client.post("/v1/tags", json=TEE, headers=t).json()
        off = client.post("/v1/tags?attributes=off", json=TEE, headers=t).json()
        assert on["tags"] == off["tags"]
        assert off["needs_review"] is False and on["needs_review"] is True  # the attribute values did it
        # the same in a job's result lines
        lines = [{"custom_id": "a", "product": TEE}, {"custom_id": "b", "product": TEE, "attributes": "off"}]
        results = run_job(client, t, lines)
        assert results["a"]["result"]["needs_review"] is True and results["b"]["result"]["needs_review"] is False


def run_job(client: TestClient, headers: dict[str, str], lines: list[dict[str, Any]], query: str = "") -> dict[str, Any]:
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    created = client.post(f"/v1/jobs{query}", content=body, headers=headers)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    deadline = time.monotonic() + 120
    while client.get(f"/v1/jobs/{job_id}", headers=headers).json()["state"] != "completed":
        assert time.monotonic() < deadline, "the job did not complete"
        time.sleep(0.1)
    text = client.get(f"/v1/jobs/{job_id}/results", headers=headers).text
    return {r["custom_id"]: r for r in map(json.loads, text.splitlines())}


def test_jobs_take_the_selection_per_job_and_per_line(client: TestClient, tags_key: dict[str, str]) -> None:
    lines = [
        {"custom_id": "default", "product": TEE},
        {"custom_id": "named", "product": SHOES, "attributes": ["Material", "Size"]},
        {"custom_id": "on", "product": TEE, "attributes": "on"},
        {"custom_id": "default-2", "product": SHOES},
    ]
    results = run_job(client, tags_key, lines, "?attributes=Color")
    assert list(results) == ["default", "named", "on", "default-2"]  # input order, across selections
    assert named(results["default"]["result"]) == {"Color": ["Black"]}
    assert named(results["named"]["result"]) == {"Material": ["Leather"]}
    assert named(results["on"]["result"]) == {"Color": ["Black"], "Material": ["Cotton", "Wool"]}
    assert named(results["default-2"]["result"]) == {"Color": ["Black"]}
    evidence = results["default"]["result"]["attributes"][0]["values"][0]["evidence"]
    assert evidence["from"] == "text" and "source" not in evidence
    # without ?attributes=: the server's default (on)
    assert named(run_job(client, tags_key, lines[:1])["default"]["result"]) == named(results["on"]["result"])


def test_job_attribute_problems_are_422_before_anything_runs(client: TestClient, tags_key: dict[str, str]) -> None:
    line = json.dumps({"custom_id": "a", "product": TEE}) + "\n"
    assert_error(client.post("/v1/jobs?attributes=Colour", content=line.encode(), headers=tags_key), 422, "unknown_attributes")
    bad_lines = (line + json.dumps({"custom_id": "b", "product": TEE, "attributes": ["Colour"]}) + "\n"
                 + json.dumps({"custom_id": "c", "product": TEE, "attributes": "all"}) + "\n")
    error = assert_error(client.post("/v1/jobs", content=bad_lines.encode(), headers=tags_key), 422, "invalid_job_input")
    where = [(d["loc"][:3]) for d in error["details"]]
    assert where[0] == ["line", 2, "attributes"] and "'Colour'" in error["details"][0]["message"]
    assert where[1][:2] == ["line", 3]
    assert client.get("/v1/jobs", headers=tags_key).json()["total"] >= 0  # nothing broke


def test_an_idempotent_retry_must_repeat_the_job_selection(client: TestClient, tags_key: dict[str, str]) -> None:
    body = (json.dumps({"custom_id": "a", "product": TEE}) + "\n").encode()
    h = {**tags_key, "Idempotency-Key": "attrs-retry-1"}
    first = client.post("/v1/jobs?attributes=off", content=body, headers=h)
    assert first.status_code == 202, first.text
    again = client.post("/v1/jobs?attributes=off", content=body, headers=h)
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert_error(client.post("/v1/jobs?attributes=on", content=body, headers=h), 422, "idempotency_key_reused")
    assert_error(client.post("/v1/jobs", content=body, headers=h), 422, "idempotency_key_reused")


def test_openapi_documents_the_option_and_the_contract(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/v1/tags", "/v1/tags:batch", "/v1/jobs"):
        operation = spec["paths"][path]["post"]
        (param,) = [p for p in operation["parameters"] if p["name"] == "attributes"]
        assert param["in"] == "query" and not param.get("required", False)
        schema = param["schema"]["anyOf"][0]
        assert schema["type"] == "array" and schema["maxItems"] == 100
        assert schema["items"]["maxLength"] == 200 and schema["items"]["minLength"] == 1
        assert "unknown_attributes" in operation["responses"]["422"]["description"]
    schemas = spec["components"]["schemas"]
    assert "attributes" in schemas["TagResponse"]["properties"]
    evidence = schemas["AttributeEvidence"]["properties"]
    assert "from" in evidence and "source" not in evidence
    assert "attribute_values" in schemas["FeedbackRequest"]["properties"]


def test_cli_tag_and_tag_file_take_the_flag(attrs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from serve.cli import app

    for key, value in {"TAGSMITH_DATA_DIR": str(attrs_dir), "TAGSMITH_EMBEDDER__BACKEND": "hashing",
                       "TAGSMITH_TAGGING__PIPELINE": "knn"}.items():
        monkeypatch.setenv(key, value)
    runner = CliRunner()

    def tag(*flags: str) -> dict[str, list[str]]:
        out = runner.invoke(app, ["tag", TEE["title"], "--description", TEE["description"], "--json", *flags])
        assert out.exit_code == 0, out.output
        return named(json.loads(out.stdout))

    assert tag() == {"Color": ["Black"], "Material": ["Cotton", "Wool"]}
    assert tag("--attributes", "off") == {}
    assert tag("--attributes", "Color, size") == {"Color": ["Black"]}
    refused = runner.invoke(app, ["tag", TEE["title"], "--attributes", "Colour,Fabric"])
    assert refused.exit_code == 1 and "'Colour', 'Fabric'" in " ".join(refused.output.split())
    table = runner.invoke(app, ["tag", TEE["title"]])
    assert table.exit_code == 0 and "Black" in table.output and "attributes" in table.output

    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(p) + "\n" for p in (TEE, SHOES)), encoding="utf-8")
    done = runner.invoke(app, ["tag-file", str(src), "-o", str(out), "--attributes", "Size,Color"])
    assert done.exit_code == 0, done.output
    results = [TagResult.model_validate_json(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [{a.name for a in r.attributes} for r in results] == [{"Color"}, {"Color"}]
    assert '"from":"text"' in out.read_text(encoding="utf-8")
    out.unlink()
    assert runner.invoke(app, ["tag-file", str(src), "-o", str(out), "--attributes", "off"]).exit_code == 0
    assert all(not TagResult.model_validate_json(line).attributes for line in out.read_text(encoding="utf-8").splitlines())
    refused = runner.invoke(app, ["tag-file", str(src), "-o", str(tmp_path / "new.jsonl"), "--attributes", "Colour"])
    assert refused.exit_code == 1 and "Colour" in refused.output

    # needs_review reflects low-confidence attribute values here too
    monkeypatch.setenv("TAGSMITH_TAGGING__ATTRIBUTE_REVIEW_THRESHOLD", "0.99")
    review = {}
    for flag in ("on", "off"):
        dest = tmp_path / f"review-{flag}.jsonl"
        assert runner.invoke(app, ["tag-file", str(src), "-o", str(dest), "--attributes", flag]).exit_code == 0
        review[flag] = [TagResult.model_validate_json(line).needs_review for line in dest.read_text(encoding="utf-8").splitlines()]
    assert review == {"on": [True, True], "off": [False, False]}


# ---- feedback ------------------------------------------------------------------------------
def feedback(client: TestClient, key: dict[str, str], title: str, values: Any, *, tags: list[str] | None = None,
             product_id: str = "fb-zorblax") -> Any:
    body: dict[str, Any] = {"product": {"id": product_id, "title": title}, "verdict": "correct",
                            "tags": tags or ["apparel/tops/tees"]}
    if values is not None:
        body["attribute_values"] = values
    return client.post("/v1/feedback", json=body, headers=key)


def test_a_corrected_attribute_value_changes_the_next_answer(attrs_dir: Path) -> None:
    keys = make_keys(attrs_dir)
    with running_app(service_settings(attrs_dir)) as client:
        t, f = auth(keys["tags"]), auth(keys["feedback"])
        product = {"title": "Zorblax crew neck t-shirt white"}
        before = client.post("/v1/tags", json=product, headers=t).json()
        assert before["tags"][0]["id"] == "apparel/tops/tees"
        assert named(before) == {"Color": ["White"]}  # Brand is open: nothing teaches it "Zorblax" yet
        created = feedback(client, f, "Zorblax graphic tee black", {"brand": "Zorblax", "color": "black"})
        assert created.status_code == 201, created.text
        # a closed value given by its name is stored as its id
        assert created.json()["attribute_values"] == {"brand": ["Zorblax"], "color": ["color/black"]}
        after = client.post("/v1/tags", json=product, headers=t).json()
        assert named(after) == {"Color": ["White"], "Brand": ["Zorblax"]}
        brand = next(a for a in after["attributes"] if a["attribute"] == "brand")["values"][0]
        assert brand["value_id"] is None and brand["evidence"]["span"] == [0, 7]
        assert "fb-zorblax" in [n["id"] for n in after["evidence"]["neighbors"]]
        example = client.get("/v1/examples/fb-zorblax", headers=f).json()
        assert example["attribute_values"] == {"brand": ["Zorblax"], "color": ["color/black"]}
        listed = client.get("/v1/feedback", headers=f).json()["items"][0]
        assert listed["attribute_values"] == {"brand": ["Zorblax"], "color": ["color/black"]}


def test_feedback_attribute_values_are_checked_against_the_taxonomy(attrs_dir: Path) -> None:
    keys = make_keys(attrs_dir)
    with running_app(service_settings(attrs_dir)) as client:
        f = auth(keys["feedback"])
        for values, rule in [
            ({"fabric": "silk"}, "unknown_attribute"),
            ({"size": "42"}, "attribute_not_applicable"),  # Size is on shoes, not tees
            ({"color": "Purple"}, "value_not_allowed"),
            ({"color": ["Black", "White"]}, "cardinality"),  # Color takes one value
        ]:
            error = assert_error(feedback(client, f, "Graphic tee", values), 422, "invalid_attribute_values")
            assert error["details"][0]["type"] == rule, error
            assert error["details"][0]["loc"] == ["body", "attribute_values", next(iter(values))]
        # a bad category is still reported as such, first
        assert_error(feedback(client, f, "Graphic tee", {"color": "Black"}, tags=["apparel/tops"]), 422, "invalid_tags")
        # schema bounds: a blank value, an empty list
        for values in [{"color": " "}, {"material": []}]:
            assert_error(feedback(client, f, "Graphic tee", values), 422, "validation_error")
        # several values of a multi-valued attribute; attribute and values by name, any case
        ok = feedback(client, f, "Graphic tee", {"MATERIAL": ["cotton", "WOOL", "Cotton"]})
        assert ok.status_code == 201 and ok.json()["attribute_values"] == {"material": ["material/cotton", "material/wool"]}
        # omitted: the example keeps the values that still apply; {}: none
        assert feedback(client, f, "Graphic tee", None).json()["attribute_values"] == {
            "material": ["material/cotton", "material/wool"]}
        assert feedback(client, f, "Graphic tee", None, tags=["kitchen/knives"]).json()["attribute_values"] == {}
        assert feedback(client, f, "Graphic tee", {"material": "Wool"}).status_code == 201
        assert feedback(client, f, "Graphic tee", {}).json()["attribute_values"] == {}


def test_a_feedback_database_from_before_gains_the_column(tmp_path: Path) -> None:
    import sqlite3

    from serve.feedback import FeedbackStore

    path = tmp_path / "feedback.db"
    with sqlite3.connect(path) as conn:  # the table as an older tagsmith made it, with one row
        conn.execute(
            "CREATE TABLE feedback (id VARCHAR(40) PRIMARY KEY, example_id VARCHAR(256) NOT NULL, "
            "verdict VARCHAR(16) NOT NULL, tags TEXT NOT NULL, product TEXT NOT NULL, note TEXT, "
            "reviewer VARCHAR(64) NOT NULL, taxonomy_version INTEGER NOT NULL, index_generation VARCHAR(40), "
            "created_at DATETIME NOT NULL)"
        )
        conn.execute("INSERT INTO feedback VALUES ('fb_old', 'ex-1', 'accept', '[\"t\"]', '{}', NULL, 'k', 1, NULL, "
                     "'2026-01-01 00:00:00.000000')")
    store = FeedbackStore(path)
    try:
        store.add(example_id="ex-2", verdict="correct", tags=["t"], product={}, note=None, reviewer="k",
                  taxonomy_version=1, index_generation=None, attribute_values={"color": ["color/black"]})
        records, total = store.list_records()
        assert total == 2
        assert {r.id: r.attribute_values for r in records}["fb_old"] == {}
        assert next(r for r in records if r.example_id == "ex-2").attribute_values == {"color": ["color/black"]}
    finally:
        store.close()
    FeedbackStore(path).close()  # opening again: the column is there, nothing to add
