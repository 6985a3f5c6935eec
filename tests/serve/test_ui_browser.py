"""The web UI in a real browser (headless Chromium, Debian's) against a real `tagsmith serve` on
loopback: keyboard-only review of 5 items, in which a correction changes the next tag of that
product; a product flagged again while its page is on screen (the accept refused, the new
suggestion shown); a taxonomy edit that conflicts (412) and the page showing it; script and HTML payloads
in a product title and a node name rendered as text; a crawl of every UI link without a 500.

The queue is filled through the API as a catalog system fills it (``POST /v1/tags:batch?review=true``).
One server and one browser per module. ``TAGSMITH_UI_SCREENSHOTS=DIR`` saves screenshots of
the main screens there (``scripts/ui_screenshots.py`` writes docs/ui/ this way)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from agent.contract import Product
from tests.conftest import free_port
from tests.serve.browser import chromium
from tests.serve.helpers import (
    HASHING_ENV,
    auth,
    copy_data_dir,
    make_keys,
    start_server,
    stop_server,
    wait_ready,
)

pytestmark = pytest.mark.browser

XSS_NODE = '<img src=x onerror="window.__xss=1">xss node<script>window.__xss=2</script>'
XSS_TITLE = '<script>window.__xss=3</script><b onmouseover="window.__xss=4">Wool</b> socks <img src=x onerror="window.__xss=5">'
PRODUCTS = [
    Product(id="b-1", title="Merino wool hiking socks 2 pairs, navy", description="Brand: Trailhead. Warm wool socks."),
    Product(id="b-2", title="Cast iron pan for camping"),
    Product(id="b-3", title="Wooden coffee table puzzle 500 pieces"),
    Product(id="b-4", title="Bluetooth speaker waterproof"),
    Product(id="b-5", title="Kids apron with pockets"),
    Product(id="b-6", title=XSS_TITLE, description='<iframe src="https://example.com"></iframe> warm'),
    Product(id="b-7", title="Stainless steel water bottle 1 l"),
]


@dataclass
class UI:
    base: str
    keys: dict[str, str]
    data: Path
    driver: Any

    def url(self, path: str) -> str:
        return self.base + path

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers=auth(self.keys["admin"]), timeout=30)


def shot(driver: Any, name: str) -> None:
    target = os.environ.get("TAGSMITH_UI_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(target) / f"{name}.png"))


def wait(driver: Any, condition: Any, timeout: float = 60.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def press(driver: Any, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*keys).perform()


def press_and_wait_for_a_new_page(driver: Any, *keys: str) -> None:
    from selenium.webdriver.support import expected_conditions as ec

    old = driver.find_element("tag name", "html")
    press(driver, *keys)
    wait(driver, ec.staleness_of(old))
    wait(driver, lambda d: d.execute_script("return document.readyState") == "complete")


def wait_for_queue(base: str, key: str, n: int, timeout: float = 60.0) -> None:
    """Until the queue holds ``n`` pending items (enqueuing happens in the background)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base, headers=auth(key), timeout=30) as client:
        while True:
            stats = client.get("/v1/review/stats").json()
            if stats["open"] + stats["claimed"] >= n:
                return
            assert time.monotonic() < deadline, f"the queue holds {stats}, not {n} items"
            time.sleep(0.05)


def decided_titles(ui: UI) -> dict[str, str]:
    """Product title -> verdict of every decided item, through the API."""
    with httpx.Client(base_url=ui.base, headers=auth(ui.keys["feedback"]), timeout=30) as client:
        page = client.get("/v1/review/items", params={"status": ["accepted", "corrected", "skipped"], "limit": 100})
    assert page.status_code == 200, page.text
    return {i["product"]["title"]: i["status"] for i in page.json()["items"]}


def no_script_ran(driver: Any) -> bool:
    return bool(driver.execute_script("return window.__xss === undefined"))


@pytest.fixture(scope="module")
def ui(attrs_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UI]:
    data = copy_data_dir(attrs_template, tmp_path_factory.mktemp("ui-browser") / "data")
    keys = make_keys(data)
    env = {
        "TAGSMITH_DATA_DIR": str(data), **HASHING_ENV, "TAGSMITH_TAGGING__PIPELINE": "knn",
        "TAGSMITH_TAGGING__REVIEW_THRESHOLD": "0.99",  # every answer is flagged: a full queue
        "TAGSMITH_LIMITS__RATE_PER_S": "1000", "TAGSMITH_LIMITS__RATE_BURST": "1000",
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(port, env)
    driver = None
    try:
        wait_ready(proc, base, env)
        # the queue is filled as a catalog system fills it: a batch tagged with ?review=true
        with httpx.Client(base_url=base, headers=auth(keys["tags"]), timeout=60) as client:
            answer = client.post("/v1/tags:batch?review=true", json={"products": [p.model_dump() for p in PRODUCTS]})
            assert answer.status_code == 200, answer.text
            assert all(r["needs_review"] for r in answer.json()["results"])
        wait_for_queue(base, keys["feedback"], len(PRODUCTS))
        driver = chromium()
        driver.get(f"{base}/ui/")
        assert "/ui/login" in driver.current_url
        shot(driver, "login")
        driver.find_element("id", "key").send_keys(keys["admin"])
        press_and_wait_for_a_new_page(driver, "\n")
        assert driver.current_url == f"{base}/ui/", driver.current_url
        assert keys["admin"] not in driver.current_url
        yield UI(base, keys, data, driver)
    finally:
        if driver is not None:
            driver.quit()
        stop_server(proc)
    log = "".join(p.read_text(errors="replace") for p in data.glob("server-*.log"))
    assert keys["admin"] not in log, "the API key reached the server log"


def test_untrusted_text_renders_as_text(ui: UI) -> None:
    d = ui.driver
    with ui.api() as api:
        version = api.get("/v1/taxonomy").json()["version"]
        added = api.post("/v1/taxonomy/edits", headers={"If-Match": f'"{version}"'},
                         json={"edits": [{"op": "add_node", "id": "toys/xss", "name": XSS_NODE, "parent": "toys"}]})
        assert added.status_code == 201, added.text
    d.get(ui.url("/ui/taxonomy/node?id=toys/xss"))
    assert d.find_element("css selector", "h1.node-name").text == XSS_NODE
    assert not d.find_elements("css selector", "main img, main iframe") and no_script_ran(d)
    # the lazily loaded tree (built by the script with textContent)
    d.get(ui.url("/ui/taxonomy"))
    d.find_element("css selector", 'details[data-node="toys"] > summary').click()
    link = wait(d, lambda d: d.find_element("xpath", "//details[@data-node='toys']//a[contains(., 'xss node')]"))
    assert link.text == XSS_NODE and no_script_ran(d)
    # the autocomplete's suggestions (also built with textContent)
    search = d.find_element("id", "search")
    search.send_keys("xss node")
    suggestion = wait(d, lambda d: d.find_element("css selector", "ul.suggest li .name"))
    assert suggestion.text == XSS_NODE
    assert not d.find_elements("css selector", "ul.suggest img") and no_script_ran(d)
    # a product title, in the queue and on its item page
    d.get(ui.url("/ui/queue"))
    row = d.find_element("xpath", "//tr[@data-row][.//a[contains(., 'socks')] and .//a[contains(., 'script')]]")
    assert row.find_element("css selector", "a").text == XSS_TITLE
    row.find_element("css selector", "a").click()
    wait(d, lambda d: "/ui/queue/item/" in d.current_url)
    assert d.find_element("css selector", "h1.product-title").text == XSS_TITLE
    assert not d.find_elements("css selector", "main img, main iframe, main b") and no_script_ran(d)


def _tag(ui: UI, product: Product) -> str:
    with httpx.Client(base_url=ui.base, headers=auth(ui.keys["tags"]), timeout=30) as client:
        answer = client.post("/v1/tags", json=product.model_dump())
    assert answer.status_code == 200, answer.text
    return str(answer.json()["tags"][0]["id"])


def test_keyboard_only_review_of_five_items_and_a_correction_changes_the_next_tag(ui: UI) -> None:
    d = ui.driver
    d.get(ui.url("/ui/queue"))
    shot(d, "queue")
    press(d, "j")  # the first row is selected already: j moves to the second, k back
    press(d, "k")
    press_and_wait_for_a_new_page(d, "\n")
    assert "/ui/queue/item/" in d.current_url
    decisions: list[tuple[str, str]] = []
    for step, action in enumerate(["a", "s", "c", "2", "a"]):
        title = d.find_element("css selector", "h1.product-title").text
        if action == "c":
            product = next(p for p in PRODUCTS if p.title == title)
            before = _tag(ui, product)
            target, name = ("toys/puzzles", "Puzzles") if before != "toys/puzzles" else ("toys/blocks", "Building Blocks")
            press(d, "c")
            assert d.switch_to.active_element.get_attribute("id") == "category"
            press(d, name)
            wait(d, lambda d, name=name: d.find_element("css selector", "ul.suggest li.active .name").text == name)
            press(d, "\n")  # pick the suggestion
            assert d.find_element("id", "category").get_attribute("value") == target
            # the attribute fields follow the category picked (Brand: every toy has it)
            wait(d, lambda d, target=target: d.find_element("id", "attrs-for").get_attribute("value") == target)
            assert d.find_elements("css selector", "#attribute-fields [name='attr.brand']")
            press_and_wait_for_a_new_page(d, "\n")  # submit the correction
            corrected = (product, before, target)
        elif action == "2":  # the second candidate, by its number
            second = d.find_elements("css selector", "[data-candidate]")[1].get_attribute("data-candidate")
            press(d, "2")
            assert d.find_element("id", "category").get_attribute("value") == second
            press_and_wait_for_a_new_page(d, "\n")
        else:
            press_and_wait_for_a_new_page(d, action)
        flash = d.find_element("css selector", "p.flash").text
        assert flash.startswith({"a": "Accepted", "s": "Skipped", "c": "Corrected", "2": "Corrected"}[action]), (step, flash)
        decisions.append((action, title))
    decided = decided_titles(ui)
    verdicts = {"a": "accepted", "s": "skipped", "c": "corrected", "2": "corrected"}
    assert {title: verdicts[a] for a, title in decisions} == decided
    product, before, target = corrected
    assert before != target and _tag(ui, product) == target  # the reviewer's correction taught the tagger


def test_a_product_flagged_again_while_on_screen_is_shown_anew_not_decided(ui: UI) -> None:
    d = ui.driver
    with httpx.Client(base_url=ui.base, headers=auth(ui.keys["feedback"]), timeout=30) as api:
        pending = api.get("/v1/review/items").json()["items"]
        item = next(i for i in pending if i["product"]["id"] != "b-6")
        d.get(ui.url(f"/ui/queue/item/{item['id']}"))
        assert d.find_element("id", "revision").text == str(item["revision"])
        # the catalog sends the product again, with a new title, as the reviewer reads the page
        title = "Enamel camping mug 350 ml, green"
        with httpx.Client(base_url=ui.base, headers=auth(ui.keys["tags"]), timeout=30) as tags:
            assert tags.post("/v1/tags?review=true", json={"id": item["product"]["id"], "title": title}).status_code == 200
        deadline = time.monotonic() + 60
        while api.get(f"/v1/review/items/{item['id']}").json()["revision"] == item["revision"]:
            assert time.monotonic() < deadline, "the re-enqueue never arrived"
            time.sleep(0.05)
        press_and_wait_for_a_new_page(d, "a")  # accept what the page shows: refused, the new one shown
        assert "flagged again" in d.find_element("id", "notice").text
        assert d.find_element("css selector", "h1.product-title").text == title
        assert d.find_element("id", "revision").text == str(item["revision"] + 1)
        assert api.get(f"/v1/review/items/{item['id']}").json()["decision"] is None


def test_a_taxonomy_edit_that_conflicts_shows_the_current_version_and_the_diff(ui: UI) -> None:
    d = ui.driver
    d.get(ui.url("/ui/taxonomy/node?id=kitchen/knives"))
    seen = int(d.find_element("css selector", 'form.edit-rename input[name="version"]').get_attribute("value"))
    shot(d, "taxonomy-node")
    with ui.api() as api:  # another editor publishes first
        other = api.post("/v1/taxonomy/edits", headers={"If-Match": f'"{seen}"'},
                         json={"edits": [{"op": "rename", "id": "kitchen/coffee", "name": "Coffee Machines"}]})
        assert other.status_code == 201, other.text
    name = d.find_element("css selector", 'form.edit-rename input[name="name"]')
    name.clear()
    name.send_keys("Knives")
    old = d.find_element("tag name", "html")
    d.find_element("css selector", "form.edit-rename button").click()
    from selenium.webdriver.support import expected_conditions as ec

    wait(d, ec.staleness_of(old))
    assert d.find_element("css selector", "h1.conflict-title").text == "The taxonomy changed while you edited"
    assert d.find_element("css selector", ".edited-version").text == str(seen)
    assert d.find_element("css selector", ".current-version").text == str(seen + 1)
    assert "Coffee Makers → Coffee Machines" in d.find_element("css selector", "table.diff").text
    shot(d, "conflict")
    with ui.api() as api:
        assert api.get("/v1/taxonomy/nodes/kitchen/knives").json()["name"] == "Kitchen Knives"
    old = d.find_element("tag name", "html")
    d.find_element("css selector", "form.reapply button").click()
    wait(d, ec.staleness_of(old))
    assert f"Published version {seen + 2}" in d.find_element("css selector", "p.flash").text
    assert d.find_element("css selector", "h1.node-name").text == "Knives"
    d.get(ui.url("/ui/taxonomy"))
    d.find_element("css selector", 'details[data-node="kitchen"] > summary').click()
    wait(d, lambda d: d.find_element("xpath", "//details[@data-node='kitchen']//a[.='Knives']"))
    shot(d, "taxonomy-tree")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and ((tag == "a" and name == "href") or (tag in ("img", "script", "link") and name in ("src", "href"))):
                self.links.append(value)


def test_a_crawl_of_every_ui_link_finds_no_500(ui: UI) -> None:
    reports = ui.data / "reports" / "demo-run"
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "report.md").write_text(
        "# tagsmith eval report: demo-run\n\nScores in %, 95% bootstrap confidence intervals in brackets.\n\n"
        "| run | WAF1 | accuracy (leaf) |\n|---|---|---|\n| demo-run | 88.10 [87.2, 89.0] | 85.31 |\n\n"
        f"| title | gold | predicted |\n|---|---|---|\n| {XSS_TITLE} | Socks | Yarn |\n", encoding="utf-8")
    d = ui.driver
    d.get(ui.url("/ui/reports/demo-run"))
    assert XSS_TITLE in d.find_element("css selector", "article.report").text and no_script_ran(d)
    shot(d, "report")
    d.get(ui.url("/ui/queue"))
    d.find_element("xpath", "//tr[@data-row]//a[contains(., 'Merino')]").click()
    wait(d, lambda d: d.find_elements("css selector", "h1.product-title"))
    shot(d, "item")
    cookie = d.get_cookie("tagsmith_session")
    assert cookie and cookie["httpOnly"] and cookie.get("sameSite") == "Strict"
    seen: set[str] = set()
    queue = ["/ui/"]
    statuses: dict[str, int] = {}
    with httpx.Client(base_url=ui.base, cookies={"tagsmith_session": cookie["value"]}, timeout=30) as client:
        while queue and len(seen) < 400:
            path = queue.pop()
            if path in seen:
                continue
            seen.add(path)
            r = client.get(path)
            statuses[path] = r.status_code
            if r.headers.get("content-type", "").startswith("text/html"):
                parser = _Links()
                parser.feed(r.text)
                for link in parser.links:
                    target = urlsplit(urljoin(ui.base + path, link))
                    local = target.path + (f"?{target.query}" if target.query else "")
                    if target.netloc == urlsplit(ui.base).netloc and target.path.startswith("/ui") and local not in seen:
                        queue.append(local)
    errors = {p: s for p, s in statuses.items() if s >= 500}
    assert not errors, errors
    assert len(seen) >= 30, sorted(seen)  # the crawl reached the taxonomy, queue items and reports
    assert any(p.startswith("/ui/queue/item/") for p in seen) and any(p.startswith("/ui/taxonomy/node") for p in seen)
    assert all(s in (200, 303) for s in statuses.values()), {p: s for p, s in statuses.items() if s not in (200, 303)}
