"""Taxonomy API: reads, search, versions, diff, migration map; edits with If-Match; edits
take effect for new requests without a restart while in-flight requests keep their version."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from agent.llm.fake import FixedLatencyBackend
from tests.serve.helpers import assert_error, auth, make_keys, running_app, service_settings

RENAME = {"edits": [{"op": "rename", "id": "kitchen/cookware/pans", "name": "Skillets & Frying Pans"}]}
DEPRECATE = {"edits": [{"op": "deprecate", "id": "kitchen/cookware/pans", "replaced_by": "kitchen/cookware/pots"}],
             "message": "pans and pots are one category now"}


def test_reading_the_taxonomy(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    with running_app(service_settings(shop_dir)) as client:
        h = auth(keys["feedback"])  # reading needs any valid key
        info = client.get("/v1/taxonomy", headers=h)
        assert info.status_code == 200 and info.headers["etag"] == '"1"'
        assert info.json() | {"roots": None} == {
            "version": 1, "name": "tiny shop", "source_version": "t1", "node_count": 20,
            "active_count": 19, "leaf_count": 13, "roots": None,
        }
        pages: list[str] = []
        offset = 0
        while True:  # bounded: 19 active nodes, 7 a page
            page = client.get(f"/v1/taxonomy/nodes?limit=7&offset={offset}", headers=h).json()
            assert page["total"] == 19 and page["version"] == 1
            pages += [n["id"] for n in page["items"]]
            offset += 7
            if offset >= page["total"]:
                break
        assert len(pages) == len(set(pages)) == 19 and "electronics/pagers" not in pages
        with_deprecated = client.get("/v1/taxonomy/nodes?limit=1000&include_deprecated=true", headers=h).json()
        assert with_deprecated["total"] == 20
        children = client.get("/v1/taxonomy/nodes?parent=apparel/tops", headers=h).json()
        assert [n["id"] for n in children["items"]] == ["apparel/tops/tees", "apparel/tops/hoodies"]
        node = client.get("/v1/taxonomy/nodes/kitchen/cookware/pans", headers=h).json()
        assert node["path"] == ["Kitchen", "Cookware", "Frying Pans"] and node["is_leaf"] is True
        assert node["ancestors"] == ["kitchen", "kitchen/cookware"] and node["synonyms"] == ["skillet"]
        encoded = client.get("/v1/taxonomy/nodes/kitchen%2Fcookware%2Fpans", headers=h).json()
        assert encoded["id"] == "kitchen/cookware/pans"
        assert_error(client.get("/v1/taxonomy/nodes/kitchen/nope", headers=h), 404, "not_found")
        assert_error(client.get("/v1/taxonomy/nodes?parent=nope", headers=h), 404, "not_found")
        hits = client.get("/v1/taxonomy/search?q=skillet", headers=h).json()["hits"]
        assert hits[0]["id"] == "kitchen/cookware/pans"
        assert_error(client.get("/v1/taxonomy/search?q=", headers=h), 422, "validation_error")
        assert_error(client.get("/v1/taxonomy/versions/7", headers=h), 404, "not_found")
        assert_error(client.get("/v1/taxonomy/diff?from=1&to=9", headers=h), 404, "not_found")


def test_edits_with_if_match(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    with running_app(service_settings(shop_dir)) as client:
        w, t = auth(keys["taxonomy:write"]), auth(keys["tags"])
        assert_error(client.post("/v1/taxonomy/edits", json=RENAME, headers=w), 428, "precondition_required")
        assert client.post("/v1/tags", json={"title": "Cast iron skillet"}, headers=t).json()["tags"][0]["id"] == "kitchen/cookware/pans"

        r = client.post("/v1/taxonomy/edits", json=DEPRECATE, headers={**w, "If-Match": '"1"'})
        assert r.status_code == 201, r.text
        assert r.headers["etag"] == '"2"' and r.headers["location"] == "/v1/taxonomy/versions/2"
        assert r.json() == {"version": 2, "previous_version": 1, "changes": {"deprecated": 1}}
        # the next request uses version 2, without a restart: pans is retired, its examples vote for pots
        tagged = client.post("/v1/tags", json={"title": "Cast iron skillet"}, headers=t).json()
        assert tagged["taxonomy_version"] == 2 and tagged["tags"][0]["id"] == "kitchen/cookware/pots"

        stale = client.post("/v1/taxonomy/edits", json=RENAME, headers={**w, "If-Match": '"1"'})
        error = assert_error(stale, 412, "precondition_failed")
        assert "current version is 2" in error["message"] and stale.headers["etag"] == '"2"'
        assert_error(client.post("/v1/taxonomy/edits", json=RENAME, headers={**w, "If-Match": "banana"}), 412, "precondition_failed")
        rejected = client.post(
            "/v1/taxonomy/edits", headers={**w, "If-Match": 'W/"2"'},
            json={"edits": [{"op": "add_node", "id": "toys/kites", "name": "Kites", "parent": "toys"},
                            {"op": "add_node", "id": "apparel", "name": "Again", "parent": None}]},
        )
        error = assert_error(rejected, 422, "edit_rejected")
        assert error["details"][0]["loc"] == ["body", "edits", 1] and error["details"][0]["type"] == "duplicate_id"
        assert client.get("/v1/taxonomy", headers=t).json()["version"] == 2  # all or nothing
        assert_error(client.post("/v1/taxonomy/edits", json={"edits": [{"op": "explode", "id": "x"}]},
                                 headers={**w, "If-Match": '"2"'}), 422, "validation_error")
        rename_pots = {"edits": [{"op": "rename", "id": "kitchen/cookware/pots", "name": "Pots & Pans"}]}
        anyway = client.post("/v1/taxonomy/edits", json=rename_pots, headers={**w, "If-Match": "*"})
        assert anyway.status_code == 201 and anyway.json()["version"] == 3

        versions = client.get("/v1/taxonomy/versions", headers=t).json()["items"]
        assert [v["version"] for v in versions] == [1, 2, 3]
        assert versions[1]["author"] == "taxonomy:write" and versions[1]["message"] == DEPRECATE["message"]
        detail = client.get("/v1/taxonomy/versions/2", headers=t).json()
        assert detail["edits"] == [{"op": "deprecate", "id": "kitchen/cookware/pans", "replaced_by": "kitchen/cookware/pots"}]
        diff = client.get("/v1/taxonomy/diff?from=1&to=3", headers=t).json()
        assert diff["deprecated"] == [{"id": "kitchen/cookware/pans", "replaced_by": "kitchen/cookware/pots"}]
        assert diff["renamed"] == [{"id": "kitchen/cookware/pots", "old_name": "Stock Pots", "new_name": "Pots & Pans"}]
        mapping = client.get("/v1/taxonomy/migration-map?from=1&to=3", headers=t).json()
        assert mapping["mapping"] == {"kitchen/cookware/pans": "kitchen/cookware/pots", "electronics/pagers": "electronics/phones"}
        old = client.get("/v1/taxonomy/nodes/kitchen/cookware/pans?version=1", headers=t).json()
        assert old["deprecated"] is False and old["name"] == "Frying Pans"


class _GatedBackend(FixedLatencyBackend):
    """Sets ``entered`` when its first call starts and holds that call until ``release`` is
    set: the request stays in flight for as long as the test needs, however slow the cores."""

    def __init__(self) -> None:
        super().__init__(0.0)
        self.entered, self.release = threading.Event(), threading.Event()

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(60), "never released"
        return super().generate(*args, **kwargs)


def test_in_flight_requests_finish_on_their_snapshot(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    llm = _GatedBackend()  # keeps the first request in flight while the edit is published
    with running_app(service_settings(shop_dir, tagging={"pipeline": "rag"}), llm=llm) as client:
        t = auth(keys["tags"])
        slow: dict[str, Any] = {}

        def first() -> None:
            slow["response"] = client.post("/v1/tags", json={"title": "Cast iron skillet"}, headers=t)
            slow["done"] = time.monotonic()

        thread = threading.Thread(target=first)
        thread.start()
        assert llm.entered.wait(30)  # the first request is inside its LLM call
        edited = client.post("/v1/taxonomy/edits", json=RENAME, headers={**auth(keys["admin"]), "If-Match": '"1"'})
        published = time.monotonic()
        assert edited.status_code == 201
        llm.release.set()
        second = client.post("/v1/tags", json={"title": "Cast iron skillet"}, headers=t).json()
        thread.join(timeout=60)
        assert slow["done"] > published, "the first request should still have been running"
        first_result = slow["response"].json()
        assert first_result["taxonomy_version"] == 1 and first_result["tags"][0]["name"] == "Frying Pans"
        assert second["taxonomy_version"] == 2 and second["tags"][0]["name"] == "Skillets & Frying Pans"


def _edit_concurrently(client: Any, headers: dict[str, str], bodies: list[dict[str, Any]]) -> list[Any]:
    """POST every body at once from its own thread (released together by a barrier)."""
    barrier = threading.Barrier(len(bodies))
    responses: list[Any] = [None] * len(bodies)

    def send(i: int) -> None:
        barrier.wait(timeout=30)
        responses[i] = client.post("/v1/taxonomy/edits", json=bodies[i], headers=headers)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return responses


def test_if_match_star_serialises_concurrent_edits(shop_dir: Path) -> None:
    """RFC 9110: ``If-Match: *`` matches whatever version is current, so 20 concurrent edits
    all apply, one after another; none is refused as stale, none is lost."""
    keys = make_keys(shop_dir)
    with running_app(service_settings(shop_dir)) as client:
        w = {**auth(keys["taxonomy:write"]), "If-Match": "*"}
        bodies = [{"edits": [{"op": "add_synonym", "id": "kitchen/cookware/pans", "synonym": f"pan {i}"}]}
                  for i in range(20)]
        responses = _edit_concurrently(client, w, bodies)
        assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses if r.status_code != 201]
        results = [r.json() for r in responses]
        assert sorted(r["version"] for r in results) == list(range(2, 22))  # consecutive, none lost
        assert all(r["previous_version"] == r["version"] - 1 for r in results)  # the version actually edited
        assert all(r["changes"] == {"synonyms_changed": 1} for r in results)
        assert all(r.headers["etag"] == f'"{r.json()["version"]}"' for r in responses)
        h = auth(keys["admin"])
        assert [v["version"] for v in client.get("/v1/taxonomy/versions", headers=h).json()["items"]] == list(range(1, 22))
        synonyms = client.get("/v1/taxonomy/nodes/kitchen/cookware/pans", headers=h).json()["synonyms"]
        assert sorted(synonyms) == sorted(["skillet", *(f"pan {i}" for i in range(20))])

        # a real version mismatch is still 412, and the message names only what the client sent
        stale = client.post("/v1/taxonomy/edits", json=RENAME, headers={**w, "If-Match": '"7"'})
        message = assert_error(stale, 412, "precondition_failed")["message"]
        assert "If-Match names version 7," in message and "current version is 21" in message
        assert stale.headers["etag"] == '"21"'


def test_if_match_star_still_rejects_invalid_edits(shop_dir: Path) -> None:
    """``*`` waives the version check, not validation: of 8 concurrent batches adding the same
    node, one applies and the others are invalid against the version they meet (422, not 412)."""
    keys = make_keys(shop_dir)
    with running_app(service_settings(shop_dir)) as client:
        w = {**auth(keys["taxonomy:write"]), "If-Match": "*"}
        body = {"edits": [{"op": "add_node", "id": "toys/kites", "name": "Kites", "parent": "toys"}]}
        responses = _edit_concurrently(client, w, [body] * 8)
        assert sorted(r.status_code for r in responses) == [201] + [422] * 7
        for r in responses:
            if r.status_code == 422:
                assert assert_error(r, 422, "edit_rejected")["details"][0]["type"] == "duplicate_id"
            else:
                assert r.json() == {"version": 2, "previous_version": 1, "changes": {"added": 1}}


def test_attribute_edits_over_http(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    with running_app(service_settings(shop_dir)) as client:
        w, t = auth(keys["taxonomy:write"]), auth(keys["tags"])
        define = {"edits": [
            {"op": "define_attribute", "id": "pan-size", "name": "Pan size", "open_values": True,
             "value_type": "number_with_unit", "unit": "cm",
             "normalization": {"kind": "convert_units", "target_unit": "cm", "instruction": "Convert inches to cm."}},
            {"op": "define_attribute", "id": "coating", "name": "Coating",
             "values": [{"id": "ptfe", "name": "PTFE"}, {"id": "teflon", "name": "Teflon"}]},
            {"op": "attach_attribute", "category": "kitchen/cookware", "attribute": "coating"},
        ]}
        r = client.post("/v1/taxonomy/edits", json=define, headers={**w, "If-Match": '"1"'})
        assert r.status_code == 201, r.text
        retire = {"edits": [
            {"op": "deprecate_attribute_value", "attribute": "coating", "id": "teflon", "replaced_by": "ptfe"},
            {"op": "rename_attribute", "id": "pan-size", "name": "Diameter"},
        ]}
        r = client.post("/v1/taxonomy/edits", json=retire, headers={**w, "If-Match": '"2"'})
        assert r.status_code == 201, r.text
        diff = client.get("/v1/taxonomy/diff?from=2&to=3", headers=t).json()
        assert diff["attributes_renamed"] == [{"id": "pan-size", "old_name": "Pan size", "new_name": "Diameter"}]
        assert diff["attribute_values_changed"][0]["deprecated"] == [{"id": "teflon", "replaced_by": "ptfe"}]
        coating = client.get("/v1/taxonomy/attributes/coating", headers=t).json()
        assert coating["attached_at"] == ["kitchen/cookware"] and coating["open_values"] is False
        assert coating["values"][1] == {"id": "teflon", "name": "Teflon", "synonyms": [], "deprecated": True,
                                        "replaced_by": "ptfe"}
        size = client.get("/v1/taxonomy/attributes/pan-size?version=2", headers=t).json()
        assert size["name"] == "Pan size" and size["unit"] == "cm" and size["attached_at"] == []
        assert size["normalization"] == {"kind": "convert_units", "target_unit": "cm",
                                         "instruction": "Convert inches to cm."}
        page = client.get("/v1/taxonomy/attributes", params={"category": "kitchen/cookware/pans"}, headers=t).json()
        assert "coating" in [a["id"] for a in page["items"]] and page["total"] == len(page["items"])
        everything = client.get("/v1/taxonomy/attributes", params={"limit": 1}, headers=t).json()
        assert everything["total"] >= 2 and len(everything["items"]) == 1
        assert_error(client.get("/v1/taxonomy/attributes/nope", headers=t), 404, "not_found")
        assert_error(client.get("/v1/taxonomy/attributes?category=nope", headers=t), 404, "not_found")
        mapping = client.get("/v1/taxonomy/migration-map?from=2&to=3", headers=t).json()
        assert mapping["attribute_values"] == {"coating": {"teflon": "ptfe"}}
        bad = {"edits": [{"op": "deprecate_attribute_value", "attribute": "coating", "id": "ptfe",
                          "replaced_by": "teflon"}]}
        error = client.post("/v1/taxonomy/edits", json=bad, headers={**w, "If-Match": '"3"'}).json()
        assert error["error"]["details"][0]["type"] == "invalid_replacement"


def test_a_categorys_attributes_over_http_honour_exclusions_and_deprecation(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    with running_app(service_settings(shop_dir)) as client:
        w, t = auth(keys["taxonomy:write"]), auth(keys["tags"])
        edits = {"edits": [
            {"op": "define_attribute", "id": "coating", "name": "Coating", "values": [{"id": "ptfe", "name": "PTFE"}]},
            {"op": "define_attribute", "id": "lid", "name": "Lid", "open_values": True},
            {"op": "attach_attribute", "category": "kitchen/cookware", "attribute": "coating"},
            {"op": "attach_attribute", "category": "kitchen/cookware", "attribute": "lid"},
            {"op": "exclude_attribute", "category": "kitchen/cookware/pans", "attribute": "lid"},
            {"op": "deprecate_attribute", "id": "coating"},
        ]}
        r = client.post("/v1/taxonomy/edits", json=edits, headers={**w, "If-Match": '"1"'})
        assert r.status_code == 201, r.text

        def ids(category: str, **params: str) -> list[str]:
            page = client.get("/v1/taxonomy/attributes", params={"category": category, **params}, headers=t).json()
            return [a["id"] for a in page["items"]]

        assert ids("kitchen/cookware/pots") == ["lid"]
        assert ids("kitchen/cookware/pots", include_deprecated="true") == ["coating", "lid"]
        assert ids("kitchen/cookware/pans", include_deprecated="true") == ["coating"]  # lid excluded
        node = client.get("/v1/taxonomy/nodes/kitchen/cookware/pans", headers=t).json()
        assert node["attributes"] == []
        diff = client.get("/v1/taxonomy/diff?from=1&to=2", headers=t).json()
        assert {"category": "kitchen/cookware/pans", "attached": [], "detached": [], "excluded": ["lid"],
                "included": []} in diff["attachments_changed"]
