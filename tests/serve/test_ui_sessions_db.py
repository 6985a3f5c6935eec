"""UI sessions in the database (``database.url``): the in-memory store's contract (ids,
idle expiry, the bound, revocation ends a key's sessions) on SQLite and PostgreSQL, ids kept
only as hashes; and two replicas on one database share a login (a restart is a replica too)."""

from __future__ import annotations

import hashlib
from contextlib import closing
from pathlib import Path

from sqlalchemy import select

from serve.api.auth import Principal
from serve.keys import KeyStore
from serve.ui.session_db import DatabaseSessionStore, sessions_table
from taxonomy.schema import make_engine
from tests.serve.helpers import running_app, seed_data_dir, service_settings
from tests.serve.ui_helpers import login

ALICE = Principal("k1", "alice", frozenset({"review", "tags"}))
BOB = Principal("k2", "bob", frozenset({"admin"}))


def test_the_session_contract_in_the_database(database_url: str) -> None:
    now = [1000.0]
    engine = make_engine(database_url)
    with closing(DatabaseSessionStore(engine, idle_timeout_s=100, max_sessions=3, clock=lambda: now[0])) as store:
        a = store.create(ALICE)
        got = store.get(a.id)
        assert got is not None and got.principal == ALICE and got.csrf == a.csrf and got.csrf_ok(a.csrf)
        assert store.get("not-a-session") is None and store.get(None) is None
        with engine.connect() as conn:  # the cookie value is not in the database
            assert conn.execute(select(sessions_table.c.id_sha256)).scalars().all() == [
                hashlib.sha256(a.id.encode()).hexdigest()]
        now[0] += 90
        assert store.get(a.id) is not None  # seen: the idle clock restarts
        now[0] += 90
        assert store.get(a.id) is not None
        now[0] += 101
        assert store.get(a.id) is None  # idle too long
        b1, b2, a2 = store.create(BOB), store.create(BOB), store.create(ALICE)
        store.drop_key(BOB.key_id)  # revoked key: its sessions end
        assert store.get(b1.id) is None and store.get(b2.id) is None and store.get(a2.id) is not None
        made = [store.create(ALICE) for _ in range(4)]
        assert len(store) == 3 and store.get(a2.id) is None and store.get(made[-1].id) is not None
        store.drop(made[-1].id)
        assert store.get(made[-1].id) is None


def test_a_login_on_one_replica_is_a_session_on_the_other(database_url: str, tmp_path: Path) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    seed_data_dir(a_dir, database={"url": database_url})
    store = KeyStore(database_url)
    key = store.create(frozenset({"review", "tags"}), "reviewer")[1]
    store.close()
    settings = [service_settings(d, database={"url": database_url}) for d in (a_dir, b_dir)]
    with running_app(settings[0]) as a, running_app(settings[1]) as b:
        assert login(a, key).status_code == 303
        cookie = a.cookies.get("tagsmith_session")
        assert cookie
        b.cookies.set("tagsmith_session", cookie)
        page = b.get("/ui/", follow_redirects=False)
        assert page.status_code == 200, page.headers.get("location")
