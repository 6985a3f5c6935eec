"""The web UI over HTTP (in-process): login and sessions, CSRF and origin checks, escaping of
untrusted text, the taxonomy editor's If-Match conflict page, eval reports, 404 pages."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import markupsafe
import pytest
from fastapi.testclient import TestClient

from serve.keys import KeyStore, key_store_path
from serve.ui.security import CSP, same_origin
from tests.serve.helpers import copy_data_dir, make_keys, running_app, service_settings
from tests.serve.ui_helpers import csrf_of, login

XSS_NAME = '<script>alert("node")</script><img src=x onerror=alert(1)>'
ORIGIN = {"Origin": "http://testserver"}


@pytest.fixture(scope="module")
def ui(shop_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str], Path]]:
    data = copy_data_dir(shop_template, tmp_path_factory.mktemp("ui") / "data")
    keys = make_keys(data)
    with running_app(service_settings(data)) as client:
        yield client, keys, data


def fresh(client: TestClient) -> TestClient:
    """A second browser: same app, its own cookie jar."""
    return TestClient(client.app, raise_server_exceptions=False)


@pytest.fixture
def admin(ui: tuple[TestClient, dict[str, str], Path]) -> TestClient:
    client, keys, _ = ui
    browser = fresh(client)
    assert login(browser, keys["admin"]).status_code == 303
    return browser


def test_pages_need_a_login_and_redirect_to_it(ui: Any) -> None:
    client = fresh(ui[0])
    for path in ("/ui/", "/ui/taxonomy", "/ui/reports", "/ui/queue", "/ui/taxonomy/node?id=apparel"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next="), path
    assert client.get("/ui/taxonomy/search.json?q=tee", follow_redirects=False).status_code == 303
    # the API's bearer keys do not open UI pages (no session)
    r = client.get("/ui/", headers={"Authorization": f"Bearer {ui[1]['admin']}"}, follow_redirects=False)
    assert r.status_code == 303


def test_every_ui_route_needs_a_session(ui: Any) -> None:
    from fastapi.routing import iter_route_contexts

    client = fresh(ui[0])
    seen = 0
    for route in iter_route_contexts(client.app.routes):  # type: ignore[attr-defined]
        if not route.path.startswith("/ui/") or route.path in ("/ui/login", "/ui/{rest:path}"):
            continue  # the login form, and unknown pages (a 404 page, which names nothing)
        path = route.path.replace("{name}", "r").replace("{file}", "f.png")
        path = path.replace("{item_id}", "i").replace("{action}", "accept")
        for method in sorted((route.methods or set()) - {"HEAD"}):
            r = client.request(method, path, data={"csrf": "x"}, headers=ORIGIN, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/ui/login"), (method, path, r.status_code)
            seen += 1
    assert seen >= 12


def test_login_sets_a_strict_httponly_session_and_never_logs_or_redirects_with_the_key(
    ui: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    client, keys, _ = ui
    browser = fresh(client)
    with caplog.at_level(logging.DEBUG):
        bad = login(browser, keys["admin"][:-2] + "xx")
        assert bad.status_code == 401 and "not valid" in bad.text
        assert "tagsmith_session" not in bad.headers.get("set-cookie", "")
        ok = login(browser, keys["admin"])
    assert ok.status_code == 303 and ok.headers["location"] == "/ui/"
    cookie = next(c for c in ok.headers.get_list("set-cookie") if c.startswith("tagsmith_session="))
    attrs = {a.strip().lower() for a in cookie.split(";")}
    assert "httponly" in attrs and "samesite=strict" in attrs and "path=/ui" in attrs
    assert "secure" not in attrs  # plain http on loopback; https sets it (below)
    session_id = cookie.split(";")[0].split("=", 1)[1]
    assert keys["admin"] not in cookie and len(session_id) >= 40
    home = browser.get("/ui/")
    assert home.status_code == 200 and "admin" in home.text
    logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    assert keys["admin"] not in logged and keys["admin"][-20:] not in logged
    for r in (bad, ok, home):
        assert keys["admin"] not in r.headers.get("location", "") and keys["admin"] not in r.text


def test_secure_cookie_over_https(ui: Any) -> None:
    client, keys, _ = ui
    browser = TestClient(client.app, base_url="https://testserver", raise_server_exceptions=False)
    ok = login(browser, keys["tags"], origin="https://testserver")
    cookie = next(c for c in ok.headers.get_list("set-cookie") if c.startswith("tagsmith_session="))
    assert "secure" in {a.strip().lower() for a in cookie.split(";")}


def test_login_form_is_protected_against_cross_site_posts(ui: Any) -> None:
    client, keys, _ = ui
    browser = fresh(client)
    token = csrf_of(browser.get("/ui/login").text)
    evil = browser.post("/ui/login", data={"key": keys["admin"], "csrf": token},
                        headers={"Origin": "https://evil.example"}, follow_redirects=False)
    assert evil.status_code == 403
    no_token = browser.post("/ui/login", data={"key": keys["admin"]}, headers=ORIGIN, follow_redirects=False)
    assert no_token.status_code == 403
    assert browser.get("/ui/", follow_redirects=False).status_code == 303  # still logged out


def test_security_headers_on_every_ui_response(admin: TestClient) -> None:
    for path in ("/ui/", "/ui/taxonomy", "/ui/nowhere", "/ui/static/ui.js"):
        r = admin.get(path)
        assert r.headers["content-security-policy"] == CSP, path
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
    assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP
    assert admin.get("/ui/").headers["cache-control"] == "no-store"


def _edit(browser: TestClient, form: dict[str, str], headers: dict[str, str] | None = None) -> Any:
    return browser.post("/ui/taxonomy/edit", data=form, headers=ORIGIN if headers is None else headers,
                        follow_redirects=False)


def _version(ui: Any) -> int:
    state = ui[0].app.state.tagsmith
    return int(state.services.taxonomy.info().version)


def test_state_changing_requests_need_the_session_token_and_this_origin(ui: Any, admin: TestClient) -> None:
    page = admin.get("/ui/taxonomy/node?id=toys/puzzles")
    token = csrf_of(page.text)
    base = {"op": "rename", "id": "toys/puzzles", "name": "Jigsaw Puzzles", "version": str(_version(ui))}
    before = _version(ui)
    assert _edit(admin, base).status_code == 403  # no token
    assert _edit(admin, {**base, "csrf": "x" + token}).status_code == 403  # wrong token
    assert _edit(admin, {**base, "csrf": token}, {"Origin": "http://evil.example"}).status_code == 403
    assert _edit(admin, {**base, "csrf": token}, {}).status_code == 403  # neither Origin nor Referer
    assert _edit(admin, {**base, "csrf": token}, {"Referer": "http://evil.example/x"}).status_code == 403
    # another session's token is not this one's
    other = fresh(ui[0])
    login(other, ui[1]["taxonomy:write"])
    other_token = csrf_of(other.get("/ui/taxonomy/node?id=toys/puzzles").text)
    assert _edit(admin, {**base, "csrf": other_token}).status_code == 403
    assert _version(ui) == before  # nothing was applied
    ok = _edit(admin, {**base, "csrf": token}, {"Referer": "http://testserver/ui/taxonomy"})
    assert ok.status_code == 303, ok.text
    assert _version(ui) == before + 1
    assert "Jigsaw Puzzles" in admin.get(ok.headers["location"]).text


def test_same_origin_rules() -> None:
    assert same_origin("http", "127.0.0.1:8000", "http://127.0.0.1:8000", None)
    assert not same_origin("http", "127.0.0.1:8000", "http://127.0.0.1:8001", None)
    assert not same_origin("https", "a.example", "http://a.example", None)
    assert not same_origin("http", "a.example", "null", "http://a.example/ui/")
    assert same_origin("http", "a.example", None, "http://a.example/ui/x")
    assert not same_origin("http", "a.example", None, None)


def test_a_key_without_taxonomy_write_sees_the_editor_read_only(ui: Any) -> None:
    browser = fresh(ui[0])
    login(browser, ui[1]["tags"])
    page = browser.get("/ui/taxonomy/node?id=toys/blocks")
    assert page.status_code == 200 and "Read-only" in page.text and 'action="/ui/taxonomy/edit"' not in page.text
    form = {"op": "rename", "id": "toys/blocks", "name": "Blocks", "version": str(_version(ui)), "csrf": csrf_of(page.text)}
    refused = _edit(browser, form)
    assert refused.status_code == 403 and "taxonomy:write" in refused.text


def test_untrusted_node_names_render_as_text(ui: Any, admin: TestClient) -> None:
    token = csrf_of(admin.get("/ui/taxonomy/node?id=toys").text)
    added = _edit(admin, {"op": "add", "id": "toys", "new_id": "toys/xss", "name": XSS_NAME,
                          "version": str(_version(ui)), "csrf": token})
    assert added.status_code == 303, added.text
    for path in ("/ui/taxonomy/node?id=toys/xss", "/ui/taxonomy/node?id=toys", "/ui/taxonomy?q=script",
                 added.headers["location"]):
        page = admin.get(path).text
        assert "<script>alert" not in page and "onerror=alert(1)>" not in page, path
        assert str(markupsafe.escape(XSS_NAME)) in page, path
    # the JSON the script builds the tree and the suggestions from carries it as data
    kids = admin.get("/ui/taxonomy/children.json?parent=toys").json()["items"]
    assert XSS_NAME in [k["name"] for k in kids]
    assert admin.get("/ui/taxonomy/children.json?parent=toys").headers["content-type"] == "application/json"


def test_a_stale_version_shows_the_current_one_and_the_diff(ui: Any, admin: TestClient) -> None:
    page = admin.get("/ui/taxonomy/node?id=kitchen/knives").text
    token, seen = csrf_of(page), _version(ui)
    # someone else publishes a version meanwhile
    other = fresh(ui[0])
    login(other, ui[1]["taxonomy:write"])
    other_token = csrf_of(other.get("/ui/taxonomy/node?id=kitchen/coffee").text)
    assert _edit(other, {"op": "rename", "id": "kitchen/coffee", "name": "Coffee Machines",
                         "version": str(seen), "csrf": other_token}).status_code == 303
    stale = _edit(admin, {"op": "rename", "id": "kitchen/knives", "name": "Knives", "version": str(seen), "csrf": token})
    assert stale.status_code == 412
    text = stale.text
    assert f'class="edited-version">{seen}<' in text and f'class="current-version">{seen + 1}<' in text
    assert "Coffee Makers → Coffee Machines" in text and "taxonomy:write" in text  # the diff, who made it
    assert ui[0].app.state.tagsmith.services.taxonomy.node("kitchen/knives", None).name == "Kitchen Knives"
    # re-applying from the conflict page (its form names the current version) works
    reapply = _edit(admin, {"op": "rename", "id": "kitchen/knives", "name": "Knives",
                            "version": str(seen + 1), "csrf": csrf_of(text)})
    assert reapply.status_code == 303 and _version(ui) == seen + 2


def test_rejected_edits_and_bad_input_are_4xx_pages(ui: Any, admin: TestClient) -> None:
    token = csrf_of(admin.get("/ui/taxonomy/node?id=toys").text)
    v = str(_version(ui))
    cycle = _edit(admin, {"op": "move", "id": "toys", "parent": "toys/blocks", "version": v, "csrf": token})
    assert cycle.status_code == 422 and "rejected" in cycle.text
    assert _edit(admin, {"op": "explode", "id": "toys", "version": v, "csrf": token}).status_code == 422
    assert _edit(admin, {"op": "rename", "id": "toys", "name": "T", "version": "abc", "csrf": token}).status_code == 422
    assert _edit(admin, {"op": "rename", "id": "nope", "name": "T", "version": v, "csrf": token}).status_code == 422
    assert _edit(admin, {"op": "rename", "id": "toys", "name": "", "version": v, "csrf": token}).status_code == 422
    raw = admin.post("/ui/taxonomy/edit", content=b"\xff\xfe", headers={**ORIGIN, "content-type": "application/x-www-form-urlencoded"})
    assert raw.status_code in (400, 403)
    assert admin.post("/ui/taxonomy/edit", json={"a": 1}, headers=ORIGIN).status_code == 415


@pytest.mark.parametrize("path", [
    "/ui/nowhere", "/ui/taxonomy/node?id=no/such/node", "/ui/taxonomy/node", "/ui/reports/nope",
    "/ui/reports/%2e%2e", "/ui/reports/x/files/..%2f..%2fkeys.db", "/ui/taxonomy/diff?from=1&to=999",
    "/ui/taxonomy/diff?from=x", "/ui/queue/item/does-not-exist",
])
def test_bad_ids_get_a_404_page(admin: TestClient, path: str) -> None:
    r = admin.get(path)
    assert r.status_code == 404, (path, r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("text/html") and "Not found" in r.text


def test_eval_reports_are_listed_and_rendered_as_text(ui: Any, admin: TestClient) -> None:
    reports = ui[2] / "reports" / "run-a"
    reports.mkdir(parents=True)
    payload = "<script>alert('report')</script>"
    (reports / "report.md").write_text(
        "# tagsmith eval report: run-a\n\nScores in %.\n\n| run | WAF1 |\n|---|---|\n"
        f"| run-a | 88.1 |\n| {payload} | x \\| y |\n\n- a note\n\n![levels](levels.png)\n\n![evil](../keys.db)\n",
        encoding="utf-8")
    (reports / "levels.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 16)
    listing = admin.get("/ui/reports")
    assert listing.status_code == 200 and "tagsmith eval report: run-a" in listing.text
    page = admin.get("/ui/reports/run-a")
    assert page.status_code == 200
    assert payload not in page.text and str(markupsafe.escape(payload)) in page.text
    assert "<td>88.1</td>" in page.text and "<td>x | y</td>" in page.text
    assert 'src="/ui/reports/run-a/files/levels.png"' in page.text and "keys.db" not in page.text
    png = admin.get("/ui/reports/run-a/files/levels.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert admin.get("/ui/reports/run-a/files/report.md").status_code == 404


def test_logout_and_revocation_end_the_session(ui: Any) -> None:
    client, _, data = ui
    store = KeyStore(key_store_path(data))
    _, key = store.create(frozenset({"feedback"}), "short-lived")
    browser = fresh(client)
    assert login(browser, key).status_code == 303
    page = browser.get("/ui/")
    assert page.status_code == 200
    assert browser.post("/ui/logout", data={"csrf": "wrong"}, headers=ORIGIN).status_code == 403
    out = browser.post("/ui/logout", data={"csrf": csrf_of(page.text)}, headers=ORIGIN, follow_redirects=False)
    assert out.status_code == 303 and browser.get("/ui/", follow_redirects=False).status_code == 303
    assert login(browser, key).status_code == 303
    record = next(k for k in store.all() if k.name == "short-lived")
    store.revoke(record.id)
    store.close()
    assert browser.get("/ui/", follow_redirects=False).status_code == 303


def test_no_template_or_script_marks_data_safe_or_writes_html() -> None:
    """Escaping holds by construction: no template turns autoescaping off or marks a value
    safe, and the script never assigns markup (innerHTML, insertAdjacentHTML, document.write)."""
    ui_dir = Path(__file__).resolve().parents[2] / "serve" / "ui"
    for template in (ui_dir / "templates").glob("*.html"):
        text = template.read_text(encoding="utf-8")
        assert "|safe" not in text.replace(" ", "") and "autoescape" not in text, template.name
    script = (ui_dir / "static" / "ui.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink


def test_pages_say_starting_while_the_service_loads(ui: Any, admin: TestClient) -> None:
    state = ui[0].app.state.tagsmith
    services, state.services = state.services, None  # as during start-up
    try:
        home = admin.get("/ui/")
        assert home.status_code == 200 and "(loading)" in home.text
        for path in ("/ui/taxonomy", "/ui/queue", "/ui/taxonomy/node?id=toys", "/ui/taxonomy/search.json?q=x"):
            r = admin.get(path)
            assert r.status_code == 503 and "Starting" in r.text, path
        assert admin.get("/ui/reports").status_code == 200  # needs no service
    finally:
        state.services = services


def test_a_run_without_a_report_shows_its_metrics(ui: Any, admin: TestClient) -> None:
    run = ui[2] / "reports" / "run-b"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text('{"n": 20, "waf1": 81.5, "ci": {"waf1": [80.1, 82.9]}}', encoding="utf-8")
    (run / "run.json").write_text('{"name": "<b>run b</b>"}', encoding="utf-8")
    listing = admin.get("/ui/reports").text
    assert "&lt;b&gt;run b&lt;/b&gt;" in listing and "<b>run b" not in listing
    page = admin.get("/ui/reports/run-b")
    assert page.status_code == 200 and "<td>81.5</td>" in page.text and "80.1" in page.text
    (run / "metrics.json").write_text("{not json", encoding="utf-8")
    assert admin.get("/ui/reports/run-b").status_code == 422


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/ui/", "/ui/\\evil", "javascript:alert(1)"])
def test_login_never_redirects_off_the_ui(ui: Any, target: str) -> None:
    browser = fresh(ui[0])
    form = browser.get(f"/ui/login?next={target}")
    assert "evil.example" not in form.text and "javascript:" not in form.text
    r = browser.post("/ui/login", data={"key": ui[1]["tags"], "csrf": csrf_of(form.text), "next": target},
                     headers=ORIGIN, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
