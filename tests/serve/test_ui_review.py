"""The review queue screens over HTTP (in-process): the queue in review order, the item page
with its evidence, accept / correct / skip through the review service, errors as pages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import markupsafe
import pytest
from fastapi.testclient import TestClient

from agent.contract import Product
from serve.review import flagged_entries
from serve.ui.review_pages import parse_attribute_values
from tests.serve.helpers import auth, copy_data_dir, make_keys, running_app, service_settings
from tests.serve.ui_helpers import csrf_of, login

ORIGIN = {"Origin": "http://testserver"}
XSS_TITLE = '<script>alert("title")</script><b onmouseover=alert(2)>Wool socks</b>'
PRODUCTS = [
    Product(id="p-1", title="Merino wool hiking socks 2 pairs"),
    Product(id="p-2", title="Cast iron pan for camping"),
    Product(id="p-3", title=XSS_TITLE, description="<img src=x onerror=alert(3)> warm"),
    Product(id="p-4", title="Bluetooth speaker waterproof"),
]


def enqueue(client: TestClient, products: list[Product]) -> list[str]:
    state = client.app.state.tagsmith  # type: ignore[attr-defined]
    services = state.services
    results = services.tagging.tag(products)
    entries = flagged_entries(products, results, "tests", services.tagging.current.index_generation)
    assert len(entries) == len(products), "every product should be flagged (review_threshold 0.99)"
    state.review_store.enqueue_many(entries)
    return [i.id for i in services.review.list_items(limit=100).items]


@pytest.fixture(scope="module")
def app(shop_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    data = copy_data_dir(shop_template, tmp_path_factory.mktemp("ui-review") / "data")
    keys = make_keys(data)
    with running_app(service_settings(data, tagging={"review_threshold": 0.99})) as client:
        enqueue(client, PRODUCTS)
        yield client, keys


@pytest.fixture
def reviewer(app: tuple[TestClient, dict[str, str]]) -> TestClient:
    browser = TestClient(app[0].app, raise_server_exceptions=False)
    assert login(browser, app[1]["feedback"]).status_code == 303
    return browser


def _items(app: Any) -> list[Any]:
    return list(app[0].app.state.tagsmith.services.review.list_items(statuses=["open", "claimed"], limit=100).items)


def test_the_queue_lists_items_in_review_order_with_untrusted_text_as_text(app: Any, reviewer: TestClient) -> None:
    page = reviewer.get("/ui/queue")
    assert page.status_code == 200
    ids = [i.id for i in _items(app)]
    positions = [page.text.index(f'data-row="{i}"') for i in ids]
    assert positions == sorted(positions) and len(ids) >= 3  # the service's order
    assert "<script>alert" not in page.text and str(markupsafe.escape(XSS_TITLE)) in page.text
    assert "data-page=\"queue\"" in page.text


def test_the_item_page_shows_the_suggestion_and_its_evidence(app: Any, reviewer: TestClient) -> None:
    item = next(i for i in _items(app) if i.product.id == "p-3")
    page = reviewer.get(f"/ui/queue/item/{item.id}")
    assert page.status_code == 200
    text = page.text
    assert "<script>alert" not in text and "<img src=x" not in text
    assert str(markupsafe.escape(XSS_TITLE)) in text
    assert "Candidates" in text and "Nearest tagged examples" in text
    assert item.result.evidence.neighbors[0].id in text
    example = app[0].app.state.tagsmith.services.tagging.current.index.get(item.result.evidence.neighbors[0].id)
    assert str(markupsafe.escape(example.title)) in text  # the neighbour's title, for the reviewer
    for reason in item.reasons:
        assert reason in text
    assert 'id="accept"' in text and 'id="skip"' in text and 'id="category"' in text


def test_accept_correct_and_skip_decide_and_move_on(app: Any, reviewer: TestClient) -> None:
    client, keys = app
    items = _items(app)
    first, second = items[0], items[1]
    token = csrf_of(reviewer.get(f"/ui/queue/item/{first.id}").text)
    accepted = reviewer.post(f"/ui/queue/item/{first.id}/accept", data={"csrf": token}, headers=ORIGIN,
                             follow_redirects=False)
    assert accepted.status_code == 303 and accepted.headers["location"].startswith("/ui/queue/item/")
    service = client.app.state.tagsmith.services.review
    landed = service.get(accepted.headers["location"].split("/ui/queue/item/")[1].split("?")[0])
    assert landed.id != first.id and landed.claim is not None and landed.claim.by_name == "feedback"
    decided = service.get(first.id)
    assert decided.status == "accepted" and decided.decision is not None and decided.decision.by_name == "feedback"
    # the same item again: already decided, a 409 page, not a 500
    again = reviewer.post(f"/ui/queue/item/{first.id}/skip", data={"csrf": token}, headers=ORIGIN)
    assert again.status_code == 409 and "Not saved" in again.text
    # a correction: the category must be an active leaf (422 page otherwise)
    bad = reviewer.post(f"/ui/queue/item/{second.id}/correct", data={"csrf": token, "category": "kitchen"}, headers=ORIGIN)
    assert bad.status_code == 422 and "Not saved" in bad.text
    unknown = reviewer.post(f"/ui/queue/item/{second.id}/correct", data={"csrf": token, "category": ""}, headers=ORIGIN)
    assert unknown.status_code == 422
    fixed = reviewer.post(f"/ui/queue/item/{second.id}/correct",
                          data={"csrf": token, "category": "toys/puzzles", "attributes": ""}, headers=ORIGIN,
                          follow_redirects=False)
    assert fixed.status_code == 303, fixed.text
    assert service.get(second.id).decision.category == "toys/puzzles"
    # the correction taught the tagger: the same product now gets the corrected category
    retag = client.post("/v1/tags", json=second.product.model_dump(), headers=auth(keys["tags"]))
    assert retag.status_code == 200 and retag.json()["tags"][0]["id"] == "toys/puzzles"
    third = _items(app)[0]
    skipped = reviewer.post(f"/ui/queue/item/{third.id}/skip", data={"csrf": token}, headers=ORIGIN,
                            follow_redirects=False)
    assert skipped.status_code == 303 and service.get(third.id).status == "skipped"
    decided_page = reviewer.get("/ui/queue?view=decided")
    assert decided_page.status_code == 200 and first.id in decided_page.text


def test_two_reviewers_working_down_the_queue_get_different_items(app: Any, reviewer: TestClient) -> None:
    client, keys = app
    other = TestClient(client.app, raise_server_exceptions=False)
    assert login(other, keys["admin"]).status_code == 303
    token_a = csrf_of(reviewer.get("/ui/queue").text)
    token_b = csrf_of(other.get("/ui/queue").text)
    a = reviewer.post("/ui/queue/next", data={"csrf": token_a}, headers=ORIGIN, follow_redirects=False)
    b = other.post("/ui/queue/next", data={"csrf": token_b}, headers=ORIGIN, follow_redirects=False)
    assert a.status_code == b.status_code == 303
    item_a, item_b = (r.headers["location"].removeprefix("/ui/queue/item/") for r in (a, b))
    assert item_a != item_b
    # asking again gives each the item they hold
    again = reviewer.post("/ui/queue/next", data={"csrf": token_a}, headers=ORIGIN, follow_redirects=False)
    assert again.headers["location"].endswith(item_a)
    page = other.get(f"/ui/queue/item/{item_a}")
    assert "is reviewing this item" in page.text
    refused = other.post(f"/ui/queue/item/{item_a}/accept", data={"csrf": token_b}, headers=ORIGIN)
    assert refused.status_code == 409 and "Not saved" in refused.text


def test_decisions_need_the_token_and_the_feedback_scope(app: Any, reviewer: TestClient) -> None:
    item = _items(app)[0]
    assert reviewer.post(f"/ui/queue/item/{item.id}/accept", data={"note": "x"}, headers=ORIGIN).status_code == 403
    token = csrf_of(reviewer.get("/ui/queue").text)
    assert reviewer.post(f"/ui/queue/item/{item.id}/accept", data={"csrf": token},
                         headers={"Origin": "http://evil.example"}).status_code == 403
    assert reviewer.post(f"/ui/queue/item/{item.id}/explode", data={"csrf": token}, headers=ORIGIN).status_code == 404
    assert reviewer.post("/ui/queue/item/nope/accept", data={"csrf": token}, headers=ORIGIN).status_code == 404
    tagger = TestClient(app[0].app, raise_server_exceptions=False)
    login(tagger, app[1]["tags"])
    assert tagger.get("/ui/queue").status_code == 403
    assert tagger.get(f"/ui/queue/item/{item.id}").status_code == 403
    assert app[0].app.state.tagsmith.services.review.get(item.id).status in ("open", "claimed")
    assert reviewer.get("/ui/queue?view=bogus").status_code == 404


def test_attribute_values_are_read_from_lines() -> None:
    assert parse_attribute_values("") is None
    assert parse_attribute_values("-") == {}
    assert parse_attribute_values("Color = Red, Blue\n Material=Wool ") == {"Color": ["Red", "Blue"], "Material": ["Wool"]}
    with pytest.raises(ValueError):
        parse_attribute_values("just text")
