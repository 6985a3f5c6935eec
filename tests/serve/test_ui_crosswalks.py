"""The UI shows a node's counterparts through the crosswalks: on the taxonomy node page, and
on a review item page for the suggested category."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import markupsafe
import pytest
from fastapi.testclient import TestClient

from agent.contract import Product
from taxonomy import TaxonomyStore
from taxonomy.crosswalk_catalog import CrosswalkCatalog
from tests.serve.helpers import auth, copy_data_dir, make_keys, running_app, service_settings
from tests.serve.test_crosswalks_api import PUBLISHED, google_like
from tests.serve.test_ui_review import enqueue
from tests.serve.ui_helpers import login

SKILLET = Product(id="sku-1", title="Cast iron skillet 12 inch", description="pre-seasoned")


@pytest.fixture(scope="module")
def ui(shop_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, list[str]]]:
    data = copy_data_dir(shop_template, tmp_path_factory.mktemp("ui-xwalk") / "data")
    with TaxonomyStore(service_settings(data).taxonomy_db_url) as store, CrosswalkCatalog(data, store) as catalog:
        catalog.import_taxonomy("gtest", google_like())
    keys = make_keys(data)
    with running_app(service_settings(data, tagging={"review_threshold": 0.99})) as client:
        put = client.put("/v1/crosswalks/g", json={"crosswalk": PUBLISHED}, headers=auth(keys["taxonomy:write"]))
        assert put.status_code == 201, put.text
        ids = enqueue(client, [SKILLET])
        browser = TestClient(client.app, raise_server_exceptions=False)
        assert login(browser, keys["admin"]).status_code == 303
        yield browser, ids


def _path(*names: str) -> str:
    return str(markupsafe.escape(" › ".join(names)))


def test_the_node_page_shows_its_counterparts(ui: Any) -> None:
    browser, _ = ui
    pans = browser.get("/ui/taxonomy/node", params={"id": "kitchen/cookware/pans"})
    assert pans.status_code == 200
    assert "Counterparts" in pans.text and 'data-crosswalk="g"' in pans.text
    assert _path("Home & Garden", "Kitchen & Dining", "Cookware", "Skillets") in pans.text
    assert 'data-target="4"' in pans.text and "no row of its own" not in pans.text
    pots = browser.get("/ui/taxonomy/node", params={"id": "kitchen/cookware/pots"}).text  # no row: its ancestor's
    assert 'data-target="3"' in pots and "no row of its own" in pots and "<code>kitchen/cookware</code>" in pots
    apparel = browser.get("/ui/taxonomy/node", params={"id": "apparel"}).text
    assert 'data-crosswalk="g"' in apparel and "<em>unmapped</em>" in apparel and "data-target=" not in apparel


def test_the_review_item_page_shows_the_suggested_categorys_counterpart(ui: Any) -> None:
    browser, (item_id,) = ui
    services = browser.app.state.tagsmith.services
    item = services.review.get(item_id)
    assert item.category is not None
    (expected,) = services.crosswalks.counterparts(item.category)
    page = browser.get(f"/ui/queue/item/{item_id}")
    assert page.status_code == 200 and "In other taxonomies" in page.text
    assert expected.targets, f"{item.category} should map somewhere (kitchen is mapped)"
    for target in expected.targets:
        assert f'data-target="{target.id}"' in page.text and _path(*target.path) in page.text
