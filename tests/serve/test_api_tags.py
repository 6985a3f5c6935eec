"""Tagging endpoints, the error shape, request limits and request ids (in-process, knn)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.serve.helpers import (
    assert_error,
    auth,
    copy_data_dir,
    make_keys,
    running_app,
    service_settings,
)

MAX_BATCH = 8
MAX_BODY = 4096


@pytest.fixture(scope="module")
def keys_and_client(shop_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], TestClient]]:
    data = copy_data_dir(shop_template, tmp_path_factory.mktemp("tags") / "data")
    keys = make_keys(data)
    settings = service_settings(data, limits={"max_batch_items": MAX_BATCH, "max_body_bytes": MAX_BODY})
    with running_app(settings) as client:
        yield keys, client


@pytest.fixture
def client(keys_and_client: tuple[dict[str, str], TestClient]) -> TestClient:
    return keys_and_client[1]


@pytest.fixture
def tags_key(keys_and_client: tuple[dict[str, str], TestClient]) -> dict[str, str]:
    return auth(keys_and_client[0]["tags"])


def test_tag_one_product_follows_the_contract(client: TestClient, tags_key: dict[str, str]) -> None:
    r = client.post("/v1/tags", json={"id": "sku-9", "title": "Cast iron skillet 12 inch", "description": "pre-seasoned"},
                    headers=tags_key)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "sku-9"
    assert body["tags"][0]["id"] == "kitchen/cookware/pans"
    assert body["tags"][0]["path"] == ["Kitchen", "Cookware", "Frying Pans"]
    assert body["taxonomy_version"] == 1 and body["pipeline"] == "knn" and body["degraded"] is False
    assert body["evidence"]["neighbors"] and body["evidence"]["llm"]["attempts"] == 0


def test_batch_results_come_in_input_order(client: TestClient, tags_key: dict[str, str]) -> None:
    titles = {
        "a": ("Merino wool hiking socks", "apparel/socks"),
        "b": ("Samsung Galaxy A54 smartphone 128GB", "electronics/phones"),
        "c": ("Bluetooth over-ear headphones", "electronics/headphones"),
        "d": ("Stainless stock pot 10 litre", "kitchen/cookware/pots"),
        "e": ("2000 piece jigsaw puzzle", "toys/puzzles"),
    }
    products = [{"id": k, "title": t} for k, (t, _) in titles.items()]
    r = client.post("/v1/tags:batch", json={"products": products}, headers=tags_key)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [res["id"] for res in body["results"]] == list(titles)
    assert [res["tags"][0]["id"] for res in body["results"]] == [leaf for _, leaf in titles.values()]
    assert body["taxonomy_version"] == 1


def test_batch_too_big_is_422_with_a_clear_message(client: TestClient, tags_key: dict[str, str]) -> None:
    products = [{"title": f"t-shirt {i}"} for i in range(MAX_BATCH + 1)]
    error = assert_error(client.post("/v1/tags:batch", json={"products": products}, headers=tags_key), 422, "batch_too_large")
    assert f"at most {MAX_BATCH}" in str(error["message"]) and f"has {MAX_BATCH + 1}" in str(error["message"])
    # exactly the limit is fine
    ok = client.post("/v1/tags:batch", json={"products": products[:MAX_BATCH]}, headers=tags_key)
    assert ok.status_code == 200 and len(ok.json()["results"]) == MAX_BATCH


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"title": ""}, ["body", "title"]),
        ({"title": "x" * 1001}, ["body", "title"]),
        ({"title": "ok", "colour": "red"}, ["body", "colour"]),
        ({"description": "no title"}, ["body", "title"]),
        ({"title": "ok", "attributes": {"k": 1}}, ["body", "attributes", "k"]),
        ({"title": "ok", "id": "x" * 257}, ["body", "id"]),
    ],
)
def test_invalid_products_are_422_naming_the_field(
    client: TestClient, tags_key: dict[str, str], body: dict[str, object], where: list[str]
) -> None:
    error = assert_error(client.post("/v1/tags", json=body, headers=tags_key), 422, "validation_error")
    details = error["details"]
    assert isinstance(details, list) and details[0]["loc"] == where


def test_malformed_json_and_wrong_types_are_422(client: TestClient, tags_key: dict[str, str]) -> None:
    headers = {**tags_key, "content-type": "application/json"}
    assert_error(client.post("/v1/tags", content=b'{"title": ', headers=headers), 422, "validation_error")
    assert_error(client.post("/v1/tags", content=b"[1, 2]", headers=headers), 422, "validation_error")
    assert_error(client.post("/v1/tags:batch", json={"products": []}, headers=tags_key), 422, "validation_error")


def test_request_too_large_is_413_with_or_without_content_length(client: TestClient, tags_key: dict[str, str]) -> None:
    big = json.dumps({"title": "t", "description": "x" * MAX_BODY}).encode()
    error = assert_error(client.post("/v1/tags", content=big, headers={**tags_key, "content-type": "application/json"}),
                         413, "request_too_large")
    assert str(MAX_BODY) in str(error["message"])

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        for i in range(0, len(big), 512):
            yield big[i : i + 512]

    assert_error(client.post("/v1/tags", content=chunks(), headers={**tags_key, "content-type": "application/json"}),
                 413, "request_too_large")


def test_unknown_route_and_method_use_the_error_shape(client: TestClient, tags_key: dict[str, str]) -> None:
    assert_error(client.get("/v1/nope", headers=tags_key), 404, "not_found")
    assert_error(client.get("/v1/tags", headers=tags_key), 405, "method_not_allowed")


def test_request_id_is_echoed_or_made(client: TestClient, tags_key: dict[str, str]) -> None:
    r = client.post("/v1/tags", json={"title": "tee"}, headers={**tags_key, "X-Request-ID": "order-42.retry:1"})
    assert r.headers["x-request-id"] == "order-42.retry:1"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"}).headers["x-request-id"]
    assert made != "bad id with spaces" and len(made) == 32
    assert client.get("/healthz").headers["x-request-id"] != client.get("/healthz").headers["x-request-id"]


def test_metrics_count_requests_and_tags(client: TestClient, tags_key: dict[str, str]) -> None:
    client.post("/v1/tags", json={"title": "hoodie"}, headers=tags_key)
    text = client.get("/metrics").text
    assert 'tagsmith_http_requests_total{method="POST",route="/v1/tags",status="200"}' in text
    assert 'tagsmith_tagged_products_total{pipeline="knn",source="api"}' in text
    assert "tagsmith_taxonomy_version 1.0" in text
    assert "tagsmith_index_examples 39.0" in text
    assert "tagsmith_http_request_duration_seconds_bucket" in text
