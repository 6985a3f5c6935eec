"""Three real ``tagsmith serve`` replicas on one PostgreSQL (tests/serve/replicas.py, shared with
the jobs' replica test): what one
replica changes, the others see at once (keys) or within the refresh bound (taxonomy
versions, index generations published by feedback)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import fresh_database
from tests.postgres_server import PostgresServer
from tests.serve.helpers import assert_error, auth
from tests.serve.replicas import Replica, Replicas

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
