"""Two service instances (replicas, in-process here) with their own data directories and one
database (``database.url``): a key made through one works on the other, a revocation counts on
both at once, a taxonomy edit through one makes the other's ``If-Match`` stale (412), and a
feedback example posted to one reaches the other's index at its next refresh, none lost when
both publish at once. On SQLite (one file both open) in the default tier, on PostgreSQL in the
postgres tier. Real processes: tests/serve/test_replicas.py."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from serve import tagging_state as tagging_state_module
from serve.keys import KeyStore
from tests.conftest import free_port, fresh_database
from tests.postgres_server import postgres_server
from tests.serve.helpers import (
    HASHING_ENV,
    TAGSMITH,
    assert_error,
    auth,
    running_app,
    seed_data_dir,
    service_settings,
    start_server,
    stop_server,
    wait_ready,
)
from tests.serve.test_crosswalks_api import PUBLISHED
from tests.serve.ui_helpers import login

RENAME = {"edits": [{"op": "rename", "id": "kitchen/cookware/pots", "name": "Pots & Pans"}]}
DEPRECATE = {"edits": [{"op": "deprecate", "id": "kitchen/cookware/pans", "replaced_by": "kitchen/cookware/pots"}]}


def test_two_replicas_share_keys_and_taxonomy_versions(database_url: str, tmp_path: Path) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    seed_data_dir(a_dir, database={"url": database_url})  # the taxonomy and the index go to the database
    store = KeyStore(database_url)
    admin = auth(store.create(frozenset({"admin"}), "ops")[1])
    store.close()
    settings = [service_settings(d, database={"url": database_url}) for d in (a_dir, b_dir)]
    with running_app(settings[0]) as a, running_app(settings[1]) as b:
        made = a.post("/v1/keys", json={"scopes": ["tags", "taxonomy:write"], "name": "shop"}, headers=admin)
        assert made.status_code == 201, made.text
        key = auth(made.json()["key"])
        tagged = b.post("/v1/tags", json={"title": "Cast iron skillet"}, headers=key)
        assert tagged.status_code == 200 and tagged.json()["taxonomy_version"] == 1, tagged.text

        edited = a.post("/v1/taxonomy/edits", json=DEPRECATE, headers={**key, "If-Match": '"1"'})
        assert edited.status_code == 201 and edited.headers["etag"] == '"2"', edited.text
        stale = b.post("/v1/taxonomy/edits", json=RENAME, headers={**key, "If-Match": '"1"'})
        assert_error(stale, 412, "precondition_failed")
        assert stale.headers["etag"] == '"2"'  # b learnt the new version from the database
        assert b.post("/v1/taxonomy/edits", json=RENAME, headers={**key, "If-Match": '"2"'}).status_code == 201

        assert b.delete(f"/v1/keys/{made.json()['id']}", headers=admin).status_code == 200
        assert_error(a.post("/v1/tags", json={"title": "Cast iron skillet"}, headers=key), 401, "unauthorized")


PRODUCT = {"title": "Wooden toy train set with 40 tracks and a bridge"}
SIMILAR = {"title": "Wooden train set toy with tracks and bridge for kids"}


def test_feedback_on_one_replica_reaches_the_other_and_none_is_lost(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the calibration refit that follows feedback publishes a generation of its own after
    # LEXICAL_RETRAIN_DELAY_S (10 s): on busy cores the generation names below would move
    monkeypatch.setattr(tagging_state_module, "LEXICAL_RETRAIN_DELAY_S", 3600.0)
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    seed_data_dir(a_dir, database={"url": database_url})
    store = KeyStore(database_url)
    key = auth(store.create(frozenset({"tags", "feedback"}), "shop")[1])
    store.close()
    no_timer = {"refresh_interval_s": 0}  # refreshed by hand below
    settings = [service_settings(d, database={"url": database_url}, server=no_timer) for d in (a_dir, b_dir)]
    with running_app(settings[0]) as a, running_app(settings[1]) as b:
        assert not (b_dir / "index").exists()  # b loaded the generation from the database
        state_b = b.app.state.tagsmith.services.tagging  # type: ignore[attr-defined]
        before = b.post("/v1/tags", json=SIMILAR, headers=key).json()["tags"][0]["id"]
        right = next(leaf for leaf in ("toys/blocks", "toys/puzzles", "kitchen/knives") if leaf != before)
        posted = a.post("/v1/feedback", json={"product": {"id": "sku-train", **PRODUCT}, "verdict": "correct",
                                              "tags": [right]}, headers=key)
        assert posted.status_code == 201, posted.text
        assert b.post("/v1/tags", json=SIMILAR, headers=key).json()["tags"][0]["id"] == before  # not yet
        state_b.refresh()
        after = b.post("/v1/tags", json=SIMILAR, headers=key).json()
        assert after["tags"][0]["id"] == right and after["evidence"]["neighbors"][0]["id"] == "sku-train"
        # b publishes next without having seen a's second example: its update is re-applied
        # on a's generation, so both examples are in the index everyone loads
        for client, sku in ((a, "sku-a"), (b, "sku-b")):
            body = {"product": {"id": sku, "title": f"Bamboo cutting board {sku}"}, "verdict": "correct",
                    "tags": ["kitchen/knives"]}
            assert client.post("/v1/feedback", json=body, headers=key).status_code == 201
        for client in (b, a):
            client.app.state.tagsmith.services.tagging.refresh()  # type: ignore[attr-defined]
            for sku in ("sku-train", "sku-a", "sku-b"):
                assert client.get(f"/v1/examples/{sku}", headers=key).status_code == 200, sku
            assert client.get("/v1/examples?limit=1", headers=key).json()["index_generation"] == "gen-000004"


@pytest.mark.process
@pytest.mark.postgres
def test_tagsmith_serve_keeps_its_state_in_postgresql(postgres_url: str, tmp_path: Path) -> None:
    """The real command: `tagsmith db upgrade`, `tagsmith keys create` and `tagsmith serve` with
    TAGSMITH_DATABASE_URL; no SQLite key or feedback file appears in the data directory."""
    data = tmp_path / "data"
    seed_data_dir(data, database={"url": postgres_url})
    env = {**HASHING_ENV, "TAGSMITH_DATA_DIR": str(data), "TAGSMITH_DATABASE_URL": postgres_url,
           "TAGSMITH_TAGGING__PIPELINE": "knn"}
    for command in (["db", "upgrade"], ["keys", "create", "--scopes", "tags,feedback"]):
        done = subprocess.run([TAGSMITH, *command], env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    key = auth(done.stdout.strip().splitlines()[-1])
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(port, env)
    try:
        wait_ready(proc, base, env)
        tagged = httpx.post(f"{base}/v1/tags", json={"title": "Cast iron skillet"}, headers=key, timeout=30)
        assert tagged.status_code == 200 and tagged.json()["taxonomy_version"] == 1, tagged.text
        assert httpx.get(f"{base}/v1/taxonomy", headers=key, timeout=30).headers["etag"] == '"1"'
    finally:
        stop_server(proc)
    assert not (data / "keys.db").exists() and not (data / "feedback.db").exists()
    assert not (data / "review.db").exists()
    store = KeyStore(postgres_url)
    assert [k.scopes for k in store.all()] == [frozenset({"tags", "feedback"})]
    store.close()


@pytest.mark.postgres
def test_a_sigkilled_database_gives_503_with_retry_after_and_the_service_recovers(tmp_path: Path) -> None:
    """PostgreSQL SIGKILLed, postmaster and children at once (its own durable server: the
    session's one is shared), then restarted on the same port. While it is down: what needs the
    database answers 503 + Retry-After in the error shape (never 500 or 401), /readyz says
    so, and tagging with a key verified before the outage goes on (auth.outage_key_ttl_s).
    Once it is back the same service writes again by itself, and nothing committed before the
    kill is lost: a taxonomy edit, a key, a feedback example (its index generation), a job's
    results."""
    with postgres_server(durable=True) as server, fresh_database(server) as url:
        data = tmp_path / "data"
        seed_data_dir(data, database={"url": url})
        store = KeyStore(url)
        raw_key = store.create(frozenset({"tags", "taxonomy:write", "feedback", "review"}), "shop")[1]
        key = auth(raw_key)
        unseen = auth(store.create(frozenset({"tags"}), "never-used")[1])
        store.close()
        admin = "k" * 8 + "Q3x9-v2Lr0pZ8mN4tY6wB1cE5"  # from configuration: checked without the database
        settings = service_settings(data, database={"url": url}, auth={"admin_key": admin},
                                    server={"refresh_interval_s": 0.5})
        with running_app(settings) as client:
            edited = client.post("/v1/taxonomy/edits", json=DEPRECATE, headers={**key, "If-Match": '"1"'})
            assert edited.status_code == 201, edited.text
            made = client.post("/v1/keys", json={"scopes": ["tags"], "name": "late"}, headers=auth(admin))
            assert made.status_code == 201, made.text
            example = {"product": {"id": "sku-kept", "title": "Bamboo cutting board"}, "verdict": "correct",
                       "tags": ["kitchen/knives"]}
            assert client.post("/v1/feedback", json=example, headers=key).status_code == 201
            lines = "".join(f'{{"custom_id": "k{i}", "product": {{"title": "Cast iron skillet {i}"}}}}\n'
                            for i in range(5))
            job = client.post("/v1/jobs", content=lines, headers=key).json()
            deadline = time.monotonic() + 60
            while client.get(f"/v1/jobs/{job['id']}", headers=key).json()["state"] != "completed":
                assert time.monotonic() < deadline, "the job did not complete"
                time.sleep(0.1)
            results = client.get(f"/v1/jobs/{job['id']}/results", headers=key).text
            assert client.post("/v1/tags", json={"title": "Cast iron skillet"}, headers=key).status_code == 200
            assert client.get("/readyz").json()["checks"]["database"] == "ok"

            assert login(client, raw_key).status_code == 303  # a UI session, a database row

            server.kill()
            killed = time.monotonic()
            # needs the database: 503 + Retry-After, the error shape
            for response in (
                client.post("/v1/taxonomy/edits", json=RENAME, headers={**key, "If-Match": '"2"'}),
                client.get("/v1/taxonomy/versions", headers=key),
                client.post("/v1/feedback", json=example, headers=key),
                client.post("/v1/keys", json={"scopes": ["tags"]}, headers=auth(admin)),
                client.get(f"/v1/jobs/{job['id']}", headers=key),
                client.post("/v1/tags", json={"title": "Cast iron skillet"}, headers=unseen),  # never verified
                client.get("/v1/review/items", headers=key),
                client.get("/v1/crosswalks", headers=key),
                client.put("/v1/crosswalks/g", json={"crosswalk": PUBLISHED}, headers=key),
            ):
                assert_error(response, 503, "unavailable")
                assert int(response.headers["retry-after"]) >= 1
            # needs none: tagging and the current taxonomy, with a key verified before the outage
            tagged = client.post("/v1/tags", json={"title": "Cast iron skillet"}, headers=key)
            assert tagged.status_code == 200 and tagged.json()["taxonomy_version"] == 2, tagged.text
            batch = client.post("/v1/tags:batch", json={"products": [{"title": "Chef knife"}]}, headers=key)
            assert batch.status_code == 200, batch.text
            for path in ("/v1/taxonomy", "/v1/taxonomy/nodes/kitchen/cookware/pots", "/v1/taxonomy/search?q=pan"):
                assert client.get(path, headers=key).status_code == 200, path
            # the UI: its form renders; a login (its session is a database row) is an HTML 503 page
            assert client.get("/ui/login").status_code == 200
            ui_login = login(client, raw_key)
            assert ui_login.status_code == 503 and int(ui_login.headers["retry-after"]) >= 1, ui_login.text
            assert ui_login.headers["content-type"].startswith("text/html")
            assert "The database is unavailable" in ui_login.text and "tagsmith_session" not in ui_login.cookies
            page = client.get("/ui/", follow_redirects=False)  # the session from before: checked in the database
            assert page.status_code == 503 and page.headers["content-type"].startswith("text/html"), page.text
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("unavailable"), ready.text
            assert client.get("/healthz").status_code == 200  # alive: no restart wanted
            down_s = time.monotonic() - killed

            server.start()
            back = time.monotonic()
            while True:  # recovers by itself: a write succeeds within a bounded time
                renamed = client.post("/v1/taxonomy/edits", json=RENAME, headers={**key, "If-Match": '"2"'})
                if renamed.status_code == 201:
                    break
                assert_error(renamed, 503, "unavailable")
                assert time.monotonic() - back < 30, "no write succeeded within 30 s of the restart"
                time.sleep(0.2)
            recovered_s = time.monotonic() - back
            assert client.get("/readyz").status_code == 200
            versions = client.get("/v1/taxonomy/versions", headers=key)
            assert [v["version"] for v in versions.json()["items"]] == [1, 2, 3]  # the edit survived
            late = auth(made.json()["key"])  # so did the key made just before the kill
            assert client.post("/v1/tags", json={"title": "Cast iron skillet"}, headers=late).status_code == 200
            assert client.post("/v1/tags", json={"title": "Cast iron skillet"}, headers=unseen).status_code == 200
            assert client.get(f"/v1/jobs/{job['id']}/results", headers=key).text == results  # and the job's results
            assert len(results.splitlines()) == 5
        # and the index generation the feedback published: a fresh start loads it from the database
        with running_app(service_settings(tmp_path / "fresh", database={"url": url})) as fresh:
            assert fresh.get("/v1/examples/sku-kept", headers=key).status_code == 200
        print(f"database down {down_s:.1f} s; first write {recovered_s:.2f} s after the restart")
