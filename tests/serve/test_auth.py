"""Auth: the matrix of every route × {no key, each scope}, the keys CLI, dev mode, refusals."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from serve.app import create_app
from serve.keys import KeyStore, key_store_path
from serve.state import StartupRefused
from tests.serve.helpers import (
    TAGSMITH,
    assert_error,
    auth,
    copy_data_dir,
    make_keys,
    running_app,
    service_settings,
)


@dataclass(frozen=True)
class Case:
    """Who may call a route ("open", "any" valid key, or a scope) and what an allowed call gets."""

    needs: str
    path: str
    ok: frozenset[int]
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def case(needs: str, path: str, *ok: int, **kwargs: Any) -> Case:
    return Case(needs, path, frozenset(ok), **kwargs)


ADD_ROOT = {"edits": [{"op": "add_node", "id": "matrix-root", "name": "Matrix", "parent": None}]}
FEEDBACK = {"product": {"title": "Hemp socks"}, "verdict": "correct", "tags": ["apparel/socks"]}
JOB = b'{"custom_id": "1", "product": {"title": "tee"}}\n'

#: every route of the app; a route missing here fails test_every_route_is_in_the_matrix
MATRIX: dict[tuple[str, str], Case] = {
    ("GET", "/healthz"): case("open", "/healthz", 200),
    ("GET", "/readyz"): case("open", "/readyz", 200),
    ("GET", "/metrics"): case("open", "/metrics", 200),
    ("GET", "/openapi.json"): case("open", "/openapi.json", 200),
    ("GET", "/docs"): case("open", "/docs", 200),
    ("GET", "/docs/oauth2-redirect"): case("open", "/docs/oauth2-redirect", 200),
    ("GET", "/redoc"): case("open", "/redoc", 200),
    ("POST", "/v1/tags"): case("tags", "/v1/tags", 200, json={"title": "tee"}),
    ("POST", "/v1/tags:batch"): case("tags", "/v1/tags:batch", 200, json={"products": [{"title": "tee"}]}),
    ("POST", "/v1/jobs"): case("tags", "/v1/jobs", 202, content=JOB),
    ("GET", "/v1/jobs"): case("tags", "/v1/jobs", 200),
    ("GET", "/v1/jobs/{job_id}"): case("tags", "/v1/jobs/job_missing", 404),
    ("GET", "/v1/jobs/{job_id}/results"): case("tags", "/v1/jobs/job_missing/results", 404),
    ("POST", "/v1/jobs/{job_id}/cancel"): case("tags", "/v1/jobs/job_missing/cancel", 404),
    ("DELETE", "/v1/jobs/{job_id}"): case("tags", "/v1/jobs/job_missing", 404),
    ("GET", "/v1/taxonomy"): case("any", "/v1/taxonomy", 200),
    ("GET", "/v1/taxonomy/nodes"): case("any", "/v1/taxonomy/nodes?limit=3", 200),
    ("GET", "/v1/taxonomy/nodes/{node_id:path}"): case("any", "/v1/taxonomy/nodes/apparel/tops", 200),
    ("GET", "/v1/taxonomy/attributes"): case("any", "/v1/taxonomy/attributes?limit=3", 200),
    ("GET", "/v1/taxonomy/attributes/{attribute_id:path}"): case("any", "/v1/taxonomy/attributes/nope", 404),
    ("GET", "/v1/taxonomy/search"): case("any", "/v1/taxonomy/search?q=pan", 200),
    ("GET", "/v1/taxonomy/versions"): case("any", "/v1/taxonomy/versions", 200),
    ("GET", "/v1/taxonomy/versions/{version}"): case("any", "/v1/taxonomy/versions/1", 200),
    ("GET", "/v1/taxonomy/diff"): case("any", "/v1/taxonomy/diff?from=1&to=1", 200),
    ("GET", "/v1/taxonomy/migration-map"): case("any", "/v1/taxonomy/migration-map?from=1&to=1", 200),
    # the second allowed caller finds the version moved on: 412
    ("POST", "/v1/taxonomy/edits"): case("taxonomy:write", "/v1/taxonomy/edits", 201, 412, json=ADD_ROOT,
                                         headers={"If-Match": '"1"'}),
    ("POST", "/v1/feedback"): case("feedback", "/v1/feedback", 201, json=FEEDBACK),
    ("GET", "/v1/feedback"): case("feedback", "/v1/feedback", 200),
    ("GET", "/v1/examples"): case("feedback", "/v1/examples?limit=2", 200),
    ("GET", "/v1/examples/{example_id:path}"): case("feedback", "/v1/examples/ex-toys-blocks-1", 200),
    ("DELETE", "/v1/examples/{example_id:path}"): case("feedback", "/v1/examples/ex-toys-blocks-0", 204, 404),
    ("GET", "/v1/review/items"): case("feedback", "/v1/review/items", 200),
    ("GET", "/v1/review/items/{item_id}"): case("feedback", "/v1/review/items/rv_missing", 404),
    ("GET", "/v1/review/items/{item_id}/history"): case("feedback", "/v1/review/items/rv_missing/history", 404),
    ("POST", "/v1/review/claim"): case("feedback", "/v1/review/claim", 200, json={"n": 1}),
    ("POST", "/v1/review/items/{item_id}/claim"): case("feedback", "/v1/review/items/rv_missing/claim", 404),
    ("POST", "/v1/review/items/{item_id}/release"): case("feedback", "/v1/review/items/rv_missing/release", 404),
    ("POST", "/v1/review/items/{item_id}/accept"): case("feedback", "/v1/review/items/rv_missing/accept", 404),
    ("POST", "/v1/review/items/{item_id}/correct"): case("feedback", "/v1/review/items/rv_missing/correct", 404,
                                                         json={"category": "toys/blocks"}),
    ("POST", "/v1/review/items/{item_id}/skip"): case("feedback", "/v1/review/items/rv_missing/skip", 404),
    ("GET", "/v1/review/export"): case("feedback", "/v1/review/export", 200),
    ("GET", "/v1/review/stats"): case("feedback", "/v1/review/stats", 200),
    ("GET", "/v1/crosswalks"): case("any", "/v1/crosswalks", 200),
    ("GET", "/v1/crosswalks/{name}"): case("any", "/v1/crosswalks/nope", 404),
    ("PUT", "/v1/crosswalks/{name}"): case("taxonomy:write", "/v1/crosswalks/nope", 422, json={}),
    ("POST", "/v1/crosswalks/{name}/edits"): case("taxonomy:write", "/v1/crosswalks/nope/edits", 422, json={}),
    ("GET", "/v1/crosswalks/{name}/versions"): case("any", "/v1/crosswalks/nope/versions", 404),
    ("GET", "/v1/crosswalks/{name}/rows"): case("any", "/v1/crosswalks/nope/rows", 404),
    ("GET", "/v1/crosswalks/{name}/broken"): case("any", "/v1/crosswalks/nope/broken", 404),
    ("GET", "/v1/crosswalks/{name}/nodes/{node_id:path}"): case("any", "/v1/crosswalks/nope/nodes/toys/blocks", 404),
    ("GET", "/v1/crosswalks/{name}/targets/{target_id:path}"): case("any", "/v1/crosswalks/nope/targets/1", 404),
    ("POST", "/v1/keys"): case("admin", "/v1/keys", 201, json={"scopes": ["tags"], "name": "made in matrix"}),
    ("GET", "/v1/keys"): case("admin", "/v1/keys", 200),
    ("DELETE", "/v1/keys/{key_id}"): case("admin", "/v1/keys/000000000000", 404),
}
CALLERS = [None, "tags", "feedback", "taxonomy:write", "admin"]


def expected(needs: str, caller: str | None, ok: frozenset[int]) -> frozenset[int]:
    if needs == "open":
        return ok
    if caller is None:
        return frozenset({401})
    if needs == "any" or caller in (needs, "admin"):
        return ok
    return frozenset({403})


@pytest.fixture(scope="module")
def app_and_keys(shop_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    data = copy_data_dir(shop_template, tmp_path_factory.mktemp("auth") / "data")
    keys = make_keys(data)
    with running_app(service_settings(data)) as client:
        yield client, keys


def test_every_route_is_in_the_matrix(app_and_keys: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = app_and_keys
    routes = set()
    for route in iter_route_contexts(client.app.routes):  # type: ignore[attr-defined]
        assert route.path, route
        if route.path == "/ui" or route.path.startswith("/ui/"):
            continue  # the web UI: a session, not a bearer key (tests/serve/test_ui_pages.py)
        routes.update((m, route.path) for m in (route.methods or ()) if m != "HEAD")
    assert routes - set(MATRIX) == set(), "add these routes to MATRIX with the scope they need"
    assert set(MATRIX) - routes == set(), "MATRIX names routes that no longer exist"


def test_auth_matrix(app_and_keys: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = app_and_keys
    wrong = []
    for (method, template), c in MATRIX.items():
        for caller in CALLERS:
            headers = {**c.headers, **(auth(keys[caller]) if caller else {})}
            r = client.request(method, c.path, json=c.json, content=c.content, headers=headers)
            allowed = expected(c.needs, caller, c.ok)
            if r.status_code not in allowed:
                wrong.append(f"{method} {template} as {caller}: {r.status_code} not in {sorted(allowed)}: {r.text[:200]}")
            if r.status_code in (401, 403):
                assert_error(r, r.status_code, "unauthorized" if r.status_code == 401 else "forbidden")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer tsk_000000000000_" + "A" * 43, "Bearer not-a-key", "tsk_x"],
)
def test_bad_credentials_are_401(app_and_keys: tuple[TestClient, dict[str, str]], header: str) -> None:
    client, _ = app_and_keys
    r = client.post("/v1/tags", json={"title": "tee"}, headers={"Authorization": header})
    assert_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_a_key_differing_in_one_character_is_refused(app_and_keys: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = app_and_keys
    key = keys["tags"]
    forged = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert client.post("/v1/tags", json={"title": "tee"}, headers=auth(forged)).status_code == 401
    assert client.post("/v1/tags", json={"title": "tee"}, headers=auth(key)).status_code == 200


@pytest.mark.process
def test_keys_cli_create_list_revoke(app_and_keys: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = app_and_keys
    data_dir = client.app.state.tagsmith.settings.data_dir  # type: ignore[attr-defined]
    env = {**os.environ, "TAGSMITH_DATA_DIR": str(data_dir)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([TAGSMITH, "keys", *args], env=env, capture_output=True, text=True, timeout=120)

    made = cli("create", "--scopes", "tags,feedback", "--name", "catalog-sync")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("tsk_")
    key_id = key.split("_")[1]
    listed = cli("list")
    assert key_id in listed.stdout and "catalog-sync" in listed.stdout and key not in listed.stdout
    assert client.post("/v1/tags", json={"title": "tee"}, headers=auth(key)).status_code == 200
    assert client.post("/v1/taxonomy/edits", json=ADD_ROOT, headers=auth(key)).status_code == 403
    revoked = cli("revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    assert_error(client.post("/v1/tags", json={"title": "tee"}, headers=auth(key)), 401, "unauthorized")
    bad = cli("create", "--scopes", "tags,root")
    assert bad.returncode == 1 and "unknown scope" in bad.stderr
    assert cli("revoke", "nosuchkey").returncode == 1
    # the key is stored hashed: it appears nowhere in the key database
    assert key.encode() not in key_store_path(data_dir).read_bytes()


def test_http_key_admin_creates_working_keys(app_and_keys: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = app_and_keys
    r = client.post("/v1/keys", json={"scopes": ["feedback"], "name": "reviewer"}, headers=auth(keys["admin"]))
    assert r.status_code == 201
    made = r.json()
    assert client.get("/v1/feedback", headers=auth(made["key"])).status_code == 200
    assert "key" not in client.get("/v1/keys", headers=auth(keys["admin"])).json()["items"][0]
    assert client.delete(f"/v1/keys/{made['id']}", headers=auth(keys["admin"])).json()["revoked_at"]
    assert client.get("/v1/feedback", headers=auth(made["key"])).status_code == 401


def test_dev_mode_needs_no_key(shop_dir: Path) -> None:
    with running_app(service_settings(shop_dir, auth={"dev_mode": True})) as client:
        assert client.post("/v1/tags", json={"title": "tee"}).status_code == 200
        assert client.get("/v1/keys").status_code == 200  # every scope


@pytest.mark.process
def test_refuses_to_start_without_keys_or_with_a_placeholder_admin_key(shop_dir: Path) -> None:
    with pytest.raises(StartupRefused, match="no API key"), TestClient(create_app(service_settings(shop_dir))):
        pass
    with pytest.raises(StartupRefused, match="at least 32"), TestClient(
        create_app(service_settings(shop_dir, auth={"admin_key": "changeme"}))
    ):
        pass
    run = subprocess.run(
        [TAGSMITH, "serve", "--port", "1"], env={**os.environ, "TAGSMITH_DATA_DIR": str(shop_dir)},
        capture_output=True, text=True, timeout=120,
    )
    message = " ".join(run.stderr.split())  # the console wraps long lines
    assert run.returncode == 2 and "refusing to start" in message and "tagsmith keys create" in message


def test_configured_admin_key_works(shop_dir: Path) -> None:
    secret = "k" * 8 + "Q3x9-v2Lr0pZ8mN4tY6wB1cE5"  # 33 characters
    with running_app(service_settings(shop_dir, auth={"admin_key": secret})) as client:
        assert client.get("/v1/keys", headers=auth(secret)).status_code == 200
        assert client.get("/v1/keys", headers=auth(secret + "x")).status_code == 401
    assert not KeyStore(key_store_path(shop_dir)).has_active_keys()


# ---- failed authentications per client address (issue 18, finding 4) -------------------
WRONG = auth("tsk_000000000000_" + "A" * 43)  # well-formed: each one costs a key lookup


@pytest.mark.parametrize("attempts", [100, pytest.param(1000, marks=pytest.mark.slow)])
def test_failed_authentications_end_in_429_for_that_address_only(shop_dir: Path, attempts: int) -> None:
    keys = make_keys(shop_dir)
    burst = 20
    # one failure back every 1,000 minutes: no token refills during the loop, however slow the machine
    limits = {"auth_failure_burst": burst, "auth_failures_per_min": 0.001}
    with running_app(service_settings(shop_dir, limits=limits)) as client:
        app = client.app
        attacker = TestClient(app, client=("203.0.113.7", 40000))
        other = TestClient(app, client=("198.51.100.2", 40000))
        statuses = [attacker.get("/v1/taxonomy", headers=WRONG).status_code for _ in range(attempts)]
        assert statuses[:burst] == [401] * burst and set(statuses[burst:]) == {429}, statuses[:40]
        limited = attacker.get("/v1/taxonomy", headers=WRONG)
        assert_error(limited, 429, "rate_limited")
        assert 1 <= int(limited.headers["retry-after"]) <= 60 / limits["auth_failures_per_min"]  # one token's refill
        # while limited, a valid key from that address is refused too (nothing to learn) …
        assert_error(attacker.get("/v1/taxonomy", headers=auth(keys["tags"])), 429, "rate_limited")
        # … and another address is unaffected, right key or wrong
        assert other.get("/v1/taxonomy", headers=auth(keys["tags"])).status_code == 200
        assert_error(other.get("/v1/taxonomy", headers=WRONG), 401, "unauthorized")
        metrics = client.get("/metrics").text
        assert f'tagsmith_auth_failures_total{{outcome="invalid"}} {burst + 1}.0' in metrics
        assert f'tagsmith_auth_failures_total{{outcome="limited"}} {attempts - burst + 2}.0' in metrics


def test_a_successful_authentication_does_not_reset_the_failure_budget(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    settings = service_settings(shop_dir, limits={"auth_failure_burst": 3, "auth_failures_per_min": 0.1})
    with running_app(settings) as client:
        good = auth(keys["tags"])
        assert [client.get("/v1/taxonomy", headers=h).status_code for h in (WRONG, WRONG, good)] == [401, 401, 200]
        assert client.get("/v1/taxonomy", headers=WRONG).status_code == 401  # the third failure: spent
        assert_error(client.get("/v1/taxonomy", headers=good), 429, "rate_limited")
        # a request without credentials guesses nothing: it still gets the plain 401
        assert_error(client.get("/v1/taxonomy"), 401, "unauthorized")
