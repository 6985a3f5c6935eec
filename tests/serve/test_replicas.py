"""Three real ``tagsmith serve`` replicas on one PostgreSQL (tests/serve/replicas.py): what one
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
from tests.serve.replicas import ReplicaSet, replica_set

pytestmark = [pytest.mark.postgres, pytest.mark.process]

#: the replicas' refresh interval (server.refresh_interval_s), and the bound the tests allow
REFRESH_S = 1.0
BOUND_S = 3 * REFRESH_S + 5.0


@pytest.fixture(scope="module")
def replicas(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaSet]:
    root = tmp_path_factory.mktemp("replicas")
    with fresh_database(postgres) as url, replica_set(
        url, root, n=3, env={"TAGSMITH_SERVER__REFRESH_INTERVAL_S": str(REFRESH_S)}
    ) as rs:
        yield rs


def within(bound: float, check: Callable[[], bool]) -> float:
    """Seconds until ``check()`` holds (fails beyond ``bound``)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < bound, f"not within {bound} s"
        time.sleep(0.1)
    return time.monotonic() - started


def test_a_key_made_on_one_replica_works_on_all_and_its_revocation_too(replicas: ReplicaSet) -> None:
    a, b, c = replicas
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
