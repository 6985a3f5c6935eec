"""Feedback: a correction becomes an example at once, the next similar product benefits,
examples can be listed and deleted, and everything survives a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve import tagging_state as tagging_state_module
from tests.serve.helpers import assert_error, auth, make_keys, running_app, service_settings

PRODUCT = {"title": "Wooden toy train set with 40 tracks and a bridge"}
SIMILAR = {"title": "Wooden train set toy with tracks and bridge for kids"}


@pytest.mark.parametrize("pipeline", ["knn", "hybrid"])
def test_a_correction_helps_the_next_similar_product(
    shop_dir: Path, pipeline: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the calibration refit that follows feedback publishes a generation of its own after
    # LEXICAL_RETRAIN_DELAY_S (10 s): on busy cores the generation names below would move
    monkeypatch.setattr(tagging_state_module, "LEXICAL_RETRAIN_DELAY_S", 3600.0)
    keys = make_keys(shop_dir)
    settings = service_settings(shop_dir, tagging={"pipeline": pipeline})
    with running_app(settings) as client:
        t, f = auth(keys["tags"]), auth(keys["feedback"])
        before = {client.post("/v1/tags", json=p, headers=t).json()["tags"][0]["id"] for p in (PRODUCT, SIMILAR)}
        right = next(leaf for leaf in ("toys/blocks", "toys/puzzles", "kitchen/knives") if leaf not in before)

        r = client.post("/v1/feedback", json={"product": {"id": "sku-train", **PRODUCT}, "verdict": "correct",
                                              "tags": [right], "note": "trains go with blocks"}, headers=f)
        assert r.status_code == 201, r.text
        fb = r.json()
        assert fb["example_id"] == "sku-train" and fb["tags"] == [right] and fb["reviewer"] == keys["feedback"].split("_")[1]
        assert fb["index_generation"] == "gen-000002" and fb["taxonomy_version"] == 1

        after = client.post("/v1/tags", json=SIMILAR, headers=t).json()
        assert after["tags"][0]["id"] == right
        assert after["evidence"]["neighbors"][0]["id"] == "sku-train"

        listed = client.get("/v1/examples?q=train", headers=f).json()
        assert [e["id"] for e in listed["items"]] == ["sku-train"] and listed["index_generation"] == "gen-000002"
        assert client.get("/v1/examples?limit=1", headers=f).json()["total"] == 40
        assert client.get("/v1/examples/sku-train", headers=f).json()["tags"] == [right]
        assert client.get("/v1/feedback", headers=f).json()["items"][0]["note"] == "trains go with blocks"

    with running_app(settings) as client:  # a restart loads the published generation
        t, f = auth(keys["tags"]), auth(keys["feedback"])
        assert client.get("/v1/examples/sku-train", headers=f).status_code == 200
        assert client.post("/v1/tags", json=SIMILAR, headers=t).json()["tags"][0]["id"] == right
        assert client.delete("/v1/examples/sku-train", headers=f).status_code == 204
        assert_error(client.get("/v1/examples/sku-train", headers=f), 404, "not_found")
        assert_error(client.delete("/v1/examples/sku-train", headers=f), 404, "not_found")
        assert client.post("/v1/tags", json=SIMILAR, headers=t).json()["tags"][0]["id"] != right
        assert client.get("/v1/feedback", headers=f).json()["total"] == 1  # the decision trail stays


def test_feedback_without_id_and_repeated_feedback(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    with running_app(service_settings(shop_dir)) as client:
        f = auth(keys["feedback"])
        made = client.post("/v1/feedback", json={"product": {"title": "Bamboo socks"}, "verdict": "accept",
                                                 "tags": ["apparel/socks"]}, headers=f).json()
        assert made["example_id"].startswith("fb_") and made["verdict"] == "accept"
        for leaf in ("apparel/shoes", "apparel/socks"):  # same id twice: the last verdict wins
            r = client.post("/v1/feedback", json={"product": {"id": "sku-1", "title": "Slipper socks"},
                                                  "verdict": "correct", "tags": [leaf]}, headers=f)
            assert r.status_code == 201
        assert client.get("/v1/examples/sku-1", headers=f).json()["tags"] == ["apparel/socks"]
        assert client.get("/v1/examples", headers=f).json()["total"] == 41
        assert client.get("/v1/feedback", headers=f).json()["total"] == 3


@pytest.mark.parametrize(
    ("tags", "rule", "hint"),
    [
        (["Kitchen/Cookware/Pans"], "unknown_id", "kitchen/cookware/pans"),
        (["Frying Pans"], "unknown_id", "kitchen/cookware/pans"),
        (["kitchen"], "not_leaf", None),
        (["electronics/pagers"], "deprecated", "electronics/phones"),
    ],
)
def test_invalid_tags_are_422_with_a_suggestion(shop_dir: Path, tags: list[str], rule: str, hint: str | None) -> None:
    keys = make_keys(shop_dir)
    with running_app(service_settings(shop_dir)) as client:
        r = client.post("/v1/feedback", json={"product": {"title": "pan"}, "verdict": "correct", "tags": tags},
                        headers=auth(keys["feedback"]))
        error = assert_error(r, 422, "invalid_tags")
        assert error["details"][0]["type"] == rule and error["details"][0]["loc"] == ["body", "tags", 0]
        if hint:
            assert hint in error["details"][0]["message"]
        assert client.get("/v1/examples", headers=auth(keys["feedback"])).json()["total"] == 39
