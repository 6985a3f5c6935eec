"""Three real ``tagsmith serve`` replicas on one PostgreSQL (tests/serve/replicas.py, shared with
the jobs' replica test): what one
replica changes, the others see at once (keys) or within the refresh bound (taxonomy
versions, index generations published by feedback)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from taxonomy import TaxonomyStore
from taxonomy.crosswalk_catalog import CrosswalkCatalog
from tests.conftest import fresh_database
from tests.postgres_server import PostgresServer
from tests.serve.helpers import assert_error, auth
from tests.serve.replicas import Replica, Replicas
from tests.serve.test_crosswalks_api import PUBLISHED, google_like

pytestmark = [pytest.mark.postgres, pytest.mark.process]

#: the replicas' refresh interval (server.refresh_interval_s), and the bound the tests allow
REFRESH_S = 1.0
BOUND_S = 3 * REFRESH_S + 5.0


@pytest.fixture(scope="module")
def replicas(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    root = tmp_path_factory.mktemp("replicas")
    with fresh_database(postgres) as url, Replicas(
        root, url, 3, env={"TAGSMITH_SERVER__REFRESH_INTERVAL_S": str(REFRESH_S)}
    ) as rs:
        yield rs


def within(bound: float, check: Callable[[], bool]) -> float:
    """Seconds until ``check()`` holds (fails beyond ``bound``)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < bound, f"not within {bound} s"
        time.sleep(0.1)
    return time.monotonic() - started


def test_a_key_made_on_one_replica_works_on_all_and_its_revocation_too(replicas: Replicas) -> None:
    a, b, c = replicas[0], replicas[1], replicas[2]
    made = httpx.post(f"{a.base}/v1/keys", json={"scopes": ["tags"], "name": "shop"}, headers=replicas.admin, timeout=30)
    assert made.status_code == 201, made.text
    key = auth(made.json()["key"])
    for r in (b, c, a):
        tagged = httpx.post(f"{r.base}/v1/tags", json={"title": "Cast iron skillet"}, headers=key, timeout=30)
        assert tagged.status_code == 200, (r.name, tagged.text)
    gone = httpx.delete(f"{c.base}/v1/keys/{made.json()['id']}", headers=replicas.admin, timeout=30)
    assert gone.status_code == 200, gone.text
    for r in (a, b, c):  # keys are checked against the database on every request: at once
        refused = httpx.post(f"{r.base}/v1/tags", json={"title": "Cast iron skillet"}, headers=key, timeout=30)
        assert_error(refused, 401, "unauthorized")


PRODUCT = {"title": "Wooden toy train set with 40 tracks and a bridge"}
SIMILAR = {"title": "Wooden train set toy with tracks and bridge for kids"}


def test_feedback_and_taxonomy_edits_on_one_replica_reach_the_others_within_the_bound(replicas: Replicas) -> None:
    a, b, c = replicas[0], replicas[1], replicas[2]
    made = httpx.post(f"{a.base}/v1/keys", json={"scopes": ["tags", "feedback", "taxonomy:write"], "name": "ops"},
                      headers=replicas.admin, timeout=30)
    key = auth(made.json()["key"])

    def top(r: Replica) -> str:
        answer = httpx.post(f"{r.base}/v1/tags", json=SIMILAR, headers=key, timeout=30)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["tags"][0]["id"])

    before = top(b)
    right = next(leaf for leaf in ("toys/blocks", "toys/puzzles", "kitchen/knives") if leaf != before)
    posted = httpx.post(f"{a.base}/v1/feedback", json={"product": {"id": "sku-train", **PRODUCT}, "verdict": "correct",
                                                       "tags": [right]}, headers=key, timeout=60)
    assert posted.status_code == 201, posted.text
    assert top(a) == right  # at once on the replica that took it
    for r in (b, c):
        within(BOUND_S, lambda r=r: top(r) == right)  # type: ignore[misc]

    version = httpx.get(f"{b.base}/v1/taxonomy", headers=key, timeout=30).headers["etag"]
    edit = {"edits": [{"op": "rename", "id": "kitchen/cookware/pots", "name": "Pots & Pans"}]}
    edited = httpx.post(f"{a.base}/v1/taxonomy/edits", json=edit, headers={**key, "If-Match": version}, timeout=30)
    assert edited.status_code == 201, edited.text
    for r in (b, c):
        within(BOUND_S, lambda r=r: httpx.get(  # type: ignore[misc]
            f"{r.base}/v1/taxonomy", headers=key, timeout=30).headers["etag"] == edited.headers["etag"])
        node = httpx.get(f"{r.base}/v1/taxonomy/nodes/kitchen/cookware/pots", headers=key, timeout=30)
        assert node.status_code == 200 and node.json()["name"] == "Pots & Pans", node.text


def test_twenty_concurrent_edits_with_one_if_match_through_three_replicas_one_wins(replicas: Replicas) -> None:
    """Issue 21 6(b) on real processes: 20 edits against the same version, spread over the 3
    replicas and sent at once: exactly one is committed, the other 19 get 412 in the error
    shape, the history gains exactly one version and it holds the whole winning edit and
    nothing of the losers'."""
    made = httpx.post(f"{replicas[0].base}/v1/keys", json={"scopes": ["taxonomy:write"], "name": "editors"},
                      headers=replicas.admin, timeout=30)
    key = auth(made.json()["key"])
    etag = httpx.get(f"{replicas[1].base}/v1/taxonomy", headers=key, timeout=30).headers["etag"]
    before = httpx.get(f"{replicas[2].base}/v1/taxonomy/versions", headers=key, timeout=30).json()["items"]
    assert f'"{before[-1]["version"]}"' == etag
    n = 20
    go = threading.Barrier(n)

    def edit(i: int) -> httpx.Response:
        body = {"edits": [  # two operations: a partial commit would show one without the other
            {"op": "add_node", "id": f"toys/race-{i}", "name": f"Race Track {i}", "parent": "toys"},
            {"op": "rename", "id": "kitchen/coffee", "name": f"Coffee Makers {i}"},
        ], "message": f"editor {i}"}
        with httpx.Client(timeout=60) as client:  # connected before the barrier: the posts leave together
            client.get(f"{replicas[i % 3].base}/healthz")
            go.wait(timeout=30)
            return client.post(f"{replicas[i % 3].base}/v1/taxonomy/edits", json=body,
                               headers={**key, "If-Match": etag})

    started = time.monotonic()
    with ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(edit, range(n)))
    took = time.monotonic() - started
    won = [i for i, a in enumerate(answers) if a.status_code == 201]
    assert len(won) == 1, [(a.status_code, a.text[:200]) for a in answers]
    winner = won[0]
    for i, answer in enumerate(answers):
        if i != winner:
            assert_error(answer, 412, "precondition_failed")
    new = answers[winner].headers["etag"]
    after = httpx.get(f"{replicas[(winner + 1) % 3].base}/v1/taxonomy/versions", headers=key, timeout=30).json()["items"]
    assert [v["version"] for v in after] == [v["version"] for v in before] + [int(new.strip('"'))]
    assert after[-1]["message"] == f"editor {winner}" and after[-1]["edit_count"] == 2
    diff = httpx.get(f"{replicas[0].base}/v1/taxonomy/diff", params={"from": etag.strip('"'), "to": new.strip('"')},
                     headers=key, timeout=30).json()
    assert diff["added"] == [f"toys/race-{winner}"]
    assert [(r["id"], r["new_name"]) for r in diff["renamed"]] == [("kitchen/coffee", f"Coffee Makers {winner}")]
    changed = {k for k, v in diff.items() if isinstance(v, list) and v}
    assert changed == {"added", "renamed"}, diff  # nothing else: no loser's operation slipped in
    for r in replicas.replicas:  # every replica serves the winner's version (within the refresh bound)
        within(BOUND_S, lambda r=r: httpx.get(  # type: ignore[misc]
            f"{r.base}/v1/taxonomy", headers=key, timeout=30).headers["etag"] == new)
        loser = next(i for i in range(n) if i != winner)
        assert httpx.get(f"{r.base}/v1/taxonomy/nodes/toys/race-{loser}", headers=key, timeout=30).status_code == 404
    print(f"20 concurrent edits through 3 replicas: 1 won (#{winner}), 19 x 412, in {took:.2f} s")


def test_a_crosswalk_imported_through_one_replica_is_used_by_the_others(replicas: Replicas) -> None:
    """Crosswalks live in the shared database: imported through replica A, read and used for
    tagging on B and C; a row edit through C reaches A within the refresh bound."""
    url = replicas.database_url
    with TaxonomyStore(url) as store, CrosswalkCatalog(replicas.root / "cli", store, database_url=url) as catalog:
        catalog.import_taxonomy("gtest", google_like())  # as `tagsmith crosswalk import-taxonomy` does
    made = httpx.post(f"{replicas[0].base}/v1/keys", json={"scopes": ["tags", "taxonomy:write"], "name": "xwalk"},
                      headers=replicas.admin, timeout=30)
    key = auth(made.json()["key"])
    created = httpx.put(f"{replicas[0].base}/v1/crosswalks/g", json={"crosswalk": PUBLISHED}, headers=key, timeout=30)
    assert created.status_code == 201, created.text

    def row(r: Replica) -> list[str] | None:
        answer = httpx.get(f"{r.base}/v1/crosswalks/g/nodes/kitchen/cookware/pans", headers=key, timeout=30)
        assert answer.status_code in (200, 404), answer.text
        return answer.json()["row"] if answer.status_code == 200 else None

    for r in (replicas[1], replicas[2]):
        within(BOUND_S, lambda r=r: row(r) == ["4"])  # type: ignore[misc]
        tagged = httpx.post(f"{r.base}/v1/tags?crosswalk=g", json={"title": "Cast iron skillet 12 inch"},
                            headers=key, timeout=30)
        assert tagged.status_code == 200 and tagged.json()["crosswalk"]["taxonomy"] == "gtest", tagged.text
    edit = {"edits": [{"source_id": "kitchen/cookware/pans", "target_ids": ["3"]}]}
    edited = httpx.post(f"{replicas[2].base}/v1/crosswalks/g/edits", json=edit, headers={**key, "If-Match": '"1"'},
                        timeout=30)
    assert edited.status_code == 201, edited.text
    stale = httpx.post(f"{replicas[0].base}/v1/crosswalks/g/edits", json=edit, headers={**key, "If-Match": '"1"'},
                       timeout=30)
    assert_error(stale, 412, "precondition_failed")
    took = within(BOUND_S, lambda: row(replicas[0]) == ["3"])
    print(f"a crosswalk row edit through one replica used by another after {took:.2f} s")
