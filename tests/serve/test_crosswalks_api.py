"""Crosswalk API: list, import, counterparts, broken rows, row edits with If-Match; tags in a
second taxonomy on /v1/tags, batches and jobs (mapped, ancestor, unmapped); every error a
documented 4xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from taxonomy import Node, TaxonomyDocument, TaxonomyStore
from taxonomy.crosswalk_catalog import CrosswalkCatalog
from tests.serve.helpers import (
    assert_error,
    auth,
    copy_data_dir,
    make_keys,
    running_app,
    service_settings,
)
from tests.serve.test_jobs import wait_for

SKILLET = {"id": "sku-1", "title": "Cast iron skillet 12 inch", "description": "pre-seasoned"}


def google_like() -> TaxonomyDocument:
    rows = [
        {"id": "1", "name": "Home & Garden"},
        {"id": "2", "name": "Kitchen & Dining", "parent": "1"},
        {"id": "3", "name": "Cookware", "parent": "2"},
        {"id": "4", "name": "Skillets", "parent": "3"},
        {"id": "5", "name": "Electronics"},
    ]
    return TaxonomyDocument(name="G", source_version="2021", nodes=tuple(Node.model_validate(r) for r in rows))


#: Shopify's published form; keys are the shop taxonomy's ids (not Shopify's: not expanded)
PUBLISHED: dict[str, Any] = {
    "name": "shop → G", "input_taxonomy": "shop/1", "output_taxonomy": "gtest/2021", "source": "hand-made, CC0",
    "mapping": {
        "kitchen": ["1"], "kitchen/cookware": ["3"], "kitchen/cookware/pans": ["4"],
        "electronics": ["5"], "ghost/node": ["2"], "toys": ["999"],
    },
}


@pytest.fixture(scope="module")
def env(shop_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    data = copy_data_dir(shop_template, tmp_path_factory.mktemp("xwalk") / "data")
    with TaxonomyStore(service_settings(data).taxonomy_db_url) as store, CrosswalkCatalog(data, store) as catalog:
        catalog.import_taxonomy("gtest", google_like())
    keys = make_keys(data)
    with running_app(service_settings(data)) as client:
        yield client, keys


def test_import_list_show_and_counterparts(env: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = env
    w, r = auth(keys["taxonomy:write"]), auth(keys["feedback"])  # reading needs any valid key
    assert_error(client.put("/v1/crosswalks/g", json={"crosswalk": PUBLISHED}, headers=auth(keys["tags"])), 403, "forbidden")
    created = client.put("/v1/crosswalks/g", json={"crosswalk": PUBLISHED, "message": "first"}, headers=w)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["version"] == 1 and created.headers["etag"] == '"1"' and body["previous_version"] == 0
    assert body["report"]["unknown_source"] == ["ghost/node"]  # kept and reported, not dropped
    assert body["report"]["unknown_target"] == [{"source_id": "toys", "target_id": "999"}]
    listed = client.get("/v1/crosswalks", headers=r).json()["items"]
    assert [(c["name"], c["target_taxonomy"], c["row_count"]) for c in listed if c["name"] == "g"] == [("g", "gtest", 6)]
    detail = client.get("/v1/crosswalks/g", headers=r)
    assert detail.status_code == 200 and detail.headers["etag"] == '"1"'
    assert detail.json()["source"] == "hand-made, CC0" and detail.json()["report"]["rows"] == 6
    rows = client.get("/v1/crosswalks/g/rows?limit=2&offset=1", headers=r).json()
    assert rows["total"] == 6 and [x["source_id"] for x in rows["items"]] == ["kitchen/cookware", "kitchen/cookware/pans"]

    pans = client.get("/v1/crosswalks/g/nodes/kitchen/cookware/pans", headers=r).json()
    assert pans["status"] == "mapped" and pans["row"] == ["4"]
    assert pans["targets"] == [{"id": "4", "name": "Skillets", "path": ["Home & Garden", "Kitchen & Dining", "Cookware", "Skillets"]}]
    pots = client.get("/v1/crosswalks/g/nodes/kitchen/cookware/pots", headers=r).json()
    assert (pots["status"], pots["source_id"], pots["row"]) == ("ancestor", "kitchen/cookware", None)
    strict = client.get("/v1/crosswalks/g/nodes/kitchen/cookware/pots?fallback=false", headers=r).json()
    assert strict["status"] == "unmapped" and strict["targets"] == []
    toys = client.get("/v1/crosswalks/g/nodes/toys/puzzles", headers=r).json()
    assert toys["status"] == "unmapped"  # toys' only target is unknown to the target taxonomy
    sources = client.get("/v1/crosswalks/g/targets/3", headers=r).json()
    assert [s["id"] for s in sources["sources"]] == ["kitchen/cookware"]
    # the service method the web UI calls
    service = client.app.state.tagsmith.services.crosswalks  # type: ignore[attr-defined]
    assert [c.status for c in service.counterparts("kitchen/cookware/pans")] == ["mapped"]
    assert service.counterpart("kitchen/cookware/pans").targets[0].id == "4"  # the first crosswalk

    assert_error(client.get("/v1/crosswalks/nope", headers=r), 404, "not_found")
    assert_error(client.get("/v1/crosswalks/g/nodes/kitchen/nope", headers=r), 404, "not_found")
    assert_error(client.get("/v1/crosswalks/g/targets/12345", headers=r), 404, "not_found")
    assert_error(client.get("/v1/crosswalks/g?version=9", headers=r), 404, "not_found")
    assert_error(client.get("/v1/crosswalks/g/rows?limit=0", headers=r), 422, "validation_error")
    assert_error(client.get("/v1/crosswalks", headers={}), 401, "unauthorized")


def test_import_errors_are_documented_4xx(env: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = env
    w = auth(keys["taxonomy:write"])
    missing = {**PUBLISHED, "output_taxonomy": "absent/1"}
    assert_error(client.put("/v1/crosswalks/h", json={"crosswalk": missing}, headers=w), 409, "taxonomy_missing")
    assert_error(client.put("/v1/crosswalks/h", json={"crosswalk": {"mapping": []}}, headers=w), 422, "validation_error")
    assert_error(client.put("/v1/crosswalks/h", json={"crosswalk": {"rows": "x"}}, headers=w), 422, "validation_error")
    # two rows for one source once short ids are expanded: refused whole
    twice = {**PUBLISHED, "input_taxonomy": "shopify/2024-04",
             "mapping": {"ap": ["1"], "gid://shopify/TaxonomyCategory/ap": ["2"]}}
    assert_error(client.put("/v1/crosswalks/h", json={"crosswalk": twice}, headers=w), 422, "invalid_crosswalk")
    assert_error(client.put("/v1/crosswalks/Bad!", json={"crosswalk": PUBLISHED}, headers=w), 422, "validation_error")
    assert_error(client.put("/v1/crosswalks/h", json={"crosswalk": PUBLISHED, "target_taxonomy": "../x"}, headers=w),
                 422, "validation_error")
    assert_error(client.put("/v1/crosswalks/h", json={"crosswalk": PUBLISHED, "extra": 1}, headers=w), 422, "validation_error")
    assert_error(client.put("/v1/crosswalks/h", json={"crosswalk": PUBLISHED}, headers={**w, "If-Match": '"3"'}),
                 412, "precondition_failed")
    assert_error(client.get("/v1/crosswalks/a%0A", headers=w), 422, "validation_error")
    assert_error(client.post("/v1/tags?crosswalk=a%0A", json=SKILLET, headers=auth(keys["tags"])), 422, "validation_error")
    assert client.get("/v1/crosswalks/h", headers=w).status_code == 404  # nothing half-created


def test_row_edits_with_if_match_and_broken_rows(env: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = env
    w = auth(keys["taxonomy:write"])
    created = client.put("/v1/crosswalks/e", json={"crosswalk": PUBLISHED}, headers=w).json()
    edit = {"edits": [{"source_id": "kitchen/cookware/pots", "target_ids": ["3"]},
                      {"source_id": "ghost/node", "target_ids": None},
                      {"source_id": "toys/blocks", "target_ids": ["5"]}], "message": "pots"}
    assert_error(client.post("/v1/crosswalks/e/edits", json=edit, headers=w), 428, "precondition_required")
    assert_error(client.post("/v1/crosswalks/nope/edits", json=edit, headers={**w, "If-Match": '"1"'}), 404, "not_found")
    assert_error(client.post("/v1/crosswalks/e/edits", json=edit, headers={**auth(keys["tags"]), "If-Match": '"1"'}),
                 403, "forbidden")
    done = client.post("/v1/crosswalks/e/edits", json=edit, headers={**w, "If-Match": f'"{created["version"]}"'})
    assert done.status_code == 201, done.text
    assert done.json()["version"] == 2 and done.headers["etag"] == '"2"' and done.json()["report"]["unknown_source"] == []
    stale = assert_error(client.post("/v1/crosswalks/e/edits", json=edit, headers={**w, "If-Match": '"1"'}),
                         412, "precondition_failed")
    assert "current version is 2" in stale["message"]
    bad = {"edits": [{"source_id": "", "target_ids": []}]}
    assert_error(client.post("/v1/crosswalks/e/edits", json=bad, headers={**w, "If-Match": '"2"'}), 422, "validation_error")
    versions = client.get("/v1/crosswalks/e/versions", headers=w).json()["items"]
    assert [(v["version"], v["kind"]) for v in versions] == [(1, "import"), (2, "edit")]

    # a taxonomy edit breaks rows: the blocks retired in favour of the puzzles
    retire = {"edits": [{"op": "deprecate", "id": "toys/blocks", "replaced_by": "toys/puzzles"}]}
    r = client.post("/v1/taxonomy/edits", json=retire, headers={**w, "If-Match": "*"})
    assert r.status_code == 201, r.text
    page = client.get("/v1/crosswalks/e/broken", headers=w).json()
    found = {(i["source_id"], i["reason"]): i for i in page["items"]}
    assert found[("toys/blocks", "deprecated")]["suggestion"] == "toys/puzzles"
    assert ("toys", "target_unknown") in found and page["counts"]["deprecated"] == 1
    assert page["source_version"] == r.json()["version"] and page["checked_source_version"] < page["source_version"]
    before = client.get(f"/v1/crosswalks/e/broken?source_version={page['checked_source_version']}", headers=w).json()
    assert "deprecated" not in before["counts"]
    assert_error(client.get("/v1/crosswalks/e/broken?source_version=99", headers=w), 404, "not_found")


def _tag(client: TestClient, headers: dict[str, str], query: str = "") -> dict[str, Any]:
    r = client.post(f"/v1/tags{query}", json=SKILLET, headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_tags_in_a_second_taxonomy(env: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = env
    w, t = auth(keys["taxonomy:write"]), auth(keys["tags"])
    version = client.put("/v1/crosswalks/t", json={"crosswalk": PUBLISHED}, headers=w).json()["version"]
    plain = _tag(client, t)
    assert "crosswalk" not in plain  # absent unless asked for: existing outputs do not change
    mapped = _tag(client, t, "?crosswalk=t")
    pans = mapped["tags"][0]["id"]
    assert pans == "kitchen/cookware/pans"
    assert mapped["crosswalk"] == {
        "crosswalk": "t", "crosswalk_version": version, "taxonomy": "gtest", "version": 1, "status": "mapped",
        "source_id": pans, "reason": None,
        "tags": [{"id": "4", "name": "Skillets", "path": ["Home & Garden", "Kitchen & Dining", "Cookware", "Skillets"]}],
    }
    # the pans' row removed: the nearest mapped ancestor, labelled as such
    edit = {"edits": [{"source_id": pans, "target_ids": None}]}
    assert client.post("/v1/crosswalks/t/edits", json=edit, headers={**w, "If-Match": f'"{version}"'}).status_code == 201
    ancestor = _tag(client, t, "?crosswalk=t")["crosswalk"]
    assert (ancestor["status"], ancestor["source_id"], [x["id"] for x in ancestor["tags"]]) == ("ancestor", "kitchen/cookware", ["3"])
    unmapped = _tag(client, t, "?crosswalk=t&crosswalk_fallback=false")["crosswalk"]
    assert unmapped["status"] == "unmapped" and unmapped["tags"] == [] and unmapped["reason"]

    batch = client.post("/v1/tags:batch", json={"products": [SKILLET, {"title": "Kids puzzle 500 pieces"}], "crosswalk": "t"},
                        headers=t)
    assert batch.status_code == 200, batch.text
    assert [res["crosswalk"]["status"] for res in batch.json()["results"]] == ["ancestor", "unmapped"]
    assert_error(client.post("/v1/tags?crosswalk=nope", json=SKILLET, headers=t), 422, "unknown_crosswalk")
    both = client.post("/v1/tags:batch?crosswalk=t", json={"products": [SKILLET], "crosswalk": "g"}, headers=t)
    assert both.json()["results"][0]["crosswalk"]["crosswalk"] == "g"  # the body's wins
    assert_error(client.post("/v1/tags:batch", json={"products": [SKILLET], "crosswalk": "nope"}, headers=t),
                 422, "unknown_crosswalk")

    lines = "".join(json.dumps(x) + "\n" for x in (
        {"custom_id": "a", "product": SKILLET},
        {"custom_id": "b", "product": SKILLET, "crosswalk": "g"},
    ))
    assert_error(client.post("/v1/jobs?crosswalk=nope", content=lines, headers=t), 422, "unknown_crosswalk")
    bad_line = lines + json.dumps({"custom_id": "c", "product": SKILLET, "crosswalk": "nope"}) + "\n"
    assert_error(client.post("/v1/jobs", content=bad_line, headers=t), 422, "invalid_job_input")
    job = client.post("/v1/jobs?crosswalk=t", content=lines, headers=t)
    assert job.status_code == 202, job.text
    wait_for(client, job.json()["id"], t, {"completed"})
    results = [json.loads(x) for x in client.get(f"/v1/jobs/{job.json()['id']}/results", headers=t).text.splitlines()]
    got = {x["custom_id"]: x["result"]["crosswalk"] for x in results}
    assert (got["a"]["crosswalk"], got["a"]["status"]) == ("t", "ancestor")
    assert (got["b"]["crosswalk"], got["b"]["status"]) == ("g", "mapped")  # the line's own crosswalk wins
