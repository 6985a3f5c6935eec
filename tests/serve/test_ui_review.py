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
                          data={"csrf": token, "category": "toys/puzzles"}, headers=ORIGIN,
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


def test_a_decision_on_what_changed_meanwhile_shows_the_new_suggestion_instead(app: Any, reviewer: TestClient) -> None:
    client = app[0]
    item = _items(app)[0]
    page = reviewer.get(f"/ui/queue/item/{item.id}").text
    token = csrf_of(page)
    assert page.count(f'name="revision" value="{item.revision}"') == 3  # accept, skip, correct
    # the catalog sends the product again with a new text while the reviewer reads the page
    new_title = "Cast iron skillet 30 cm with lid"
    state = client.app.state.tagsmith
    again = Product(id=item.product.id, title=new_title)
    state.review_store.enqueue_many(flagged_entries([again], state.services.tagging.tag([again]), "tests", None))
    for action, extra in (("accept", {}), ("correct", {"category": "toys/puzzles"}), ("skip", {})):
        r = reviewer.post(f"/ui/queue/item/{item.id}/{action}",
                          data={"csrf": token, "revision": str(item.revision), **extra}, headers=ORIGIN)
        assert r.status_code == 409, (action, r.text[:300])
        assert 'id="notice"' in r.text and "flagged again" in r.text
        assert str(markupsafe.escape(new_title)) in r.text  # the new suggestion, for the reviewer to judge
        assert f'name="revision" value="{item.revision + 1}"' in r.text
    current = state.services.review.get(item.id)
    assert current.decision is None and current.revision == item.revision + 1
    done = reviewer.post(f"/ui/queue/item/{item.id}/skip", data={"csrf": token, "revision": str(current.revision)},
                         headers=ORIGIN, follow_redirects=False)
    assert done.status_code == 303 and state.services.review.get(item.id).status == "skipped"


SOCKS = Product(id="a-1", title="Merino wool hiking socks navy, brand Trailhead")


@pytest.fixture(scope="module")
def attrs_app(attrs_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    data = copy_data_dir(attrs_template, tmp_path_factory.mktemp("ui-review-attrs") / "data")
    keys = make_keys(data)
    with running_app(service_settings(data, tagging={"review_threshold": 0.99})) as client:
        (item_id,) = enqueue(client, [SOCKS])
        browser = TestClient(client.app, raise_server_exceptions=False)
        assert login(browser, keys["feedback"]).status_code == 303
        yield browser, item_id


def test_the_correct_form_offers_the_categorys_attributes_and_their_allowed_values(attrs_app: Any) -> None:
    browser, item_id = attrs_app
    service = browser.app.state.tagsmith.services.review
    item = service.get(item_id)
    snap = browser.app.state.tagsmith.services.tagging.snapshot
    page = browser.get(f"/ui/queue/item/{item_id}").text
    assert f'name="attrs_for" value="{item.category}"' in page
    for attr in snap.attributes_for(item.category):  # inherited ones included
        assert f'name="attr.{attr.id}"' in page
    assert item.category.startswith("apparel/"), item.category  # socks: Color, Material (closed), Brand (open)
    assert '<option value="color/navy"' in page and 'name="attr.material" multiple' in page  # closed: a select
    assert '<input name="attr.brand"' in page  # open: text
    for attr in item.result.attributes:  # the suggested values, selected / filled in
        for v in attr.values:
            assert (f'value="{v.value_id}" selected' if v.value_id else str(markupsafe.escape(v.value))) in page
    # the JSON the script rebuilds the fields from, for another category
    shoes = browser.get("/ui/queue/attributes.json", params={"category": "apparel/shoes"}).json()
    assert shoes["known"] and shoes["leaf"] and [a["id"] for a in shoes["attributes"]] == [
        a.id for a in snap.attributes_for("apparel/shoes")]
    color = next(a for a in shoes["attributes"] if a["id"] == "color")
    assert color["closed"] and not color["multi"] and {"id": "color/navy", "name": "Navy"} in color["values"]
    size = next(a for a in shoes["attributes"] if a["id"] == "size")
    assert not size["closed"] and size["values"] == []
    assert browser.get("/ui/queue/attributes.json", params={"category": "nope"}).json() == {
        "category": "nope", "known": False, "leaf": False, "path": None, "attributes": []}
    assert 'http-equiv' not in page and "<script>" not in page  # no inline script: the CSP stays strict


def test_attribute_corrections_are_checked_by_the_server(attrs_app: Any) -> None:
    browser, item_id = attrs_app
    service = browser.app.state.tagsmith.services.review
    token = csrf_of(browser.get(f"/ui/queue/item/{item_id}").text)
    rev = str(service.get(item_id).revision)
    base = {"csrf": token, "revision": rev, "category": "apparel/socks", "attrs_for": "apparel/socks"}
    # fields made for another category (no script ran): the page comes back with this one's fields
    other = browser.post(f"/ui/queue/item/{item_id}/correct", data={**base, "attrs_for": "kitchen/knives"}, headers=ORIGIN)
    assert other.status_code == 200 and 'id="notice"' in other.text and 'name="attr.color"' in other.text
    assert 'name="attrs_for" value="apparel/socks"' in other.text and service.get(item_id).decision is None
    # a value off the closed list: refused (422 page), nothing decided, the reviewer's values shown again
    off = browser.post(f"/ui/queue/item/{item_id}/correct",
                       data={**base, "attr.color": "plaid", "attr.brand": "Trailhead"}, headers=ORIGIN)
    assert off.status_code == 422 and "Not saved" in off.text and service.get(item_id).decision is None
    assert 'value="Trailhead"' in off.text
    done = browser.post(f"/ui/queue/item/{item_id}/correct", headers=ORIGIN, follow_redirects=False, data={
        **base, "attr.color": "color/navy", "attr.material": ["material/wool", "material/cotton"], "attr.brand": " Trailhead ",
    })
    assert done.status_code == 303, done.text[:500]
    decision = service.get(item_id).decision
    assert decision.category == "apparel/socks"
    assert decision.attribute_values == {
        "color": ["color/navy"], "material": ["material/wool", "material/cotton"], "brand": ["Trailhead"]}
