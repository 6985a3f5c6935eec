"""API keys while the database is unreachable (serve/keys.py): a key the store verified in the
database within ``outage_ttl_s`` is still accepted, any other key (never seen, seen too long
ago, found revoked or unknown, revoked through this store) re-raises the database error (the
service answers 503); with the database up every check asks it, so a revocation counts at
once. The outage is injected into the store's engine; the real one: the postgres tier's
SIGKILL test in test_shared_database.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from serve.keys import KeyStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Down:
    """The engine's ``connect`` while the database is down: a dropped connection."""

    def __init__(self) -> None:
        self.tries = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.tries += 1
        raise OperationalError("SELECT", {}, ConnectionRefusedError("server closed the connection"),
                               connection_invalidated=True)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[KeyStore, Clock]]:
    clock = Clock()
    keys = KeyStore(tmp_path / "keys.db", outage_ttl_s=300, clock=clock)
    yield keys, clock
    keys.close()


def test_a_recently_verified_key_survives_an_outage_within_the_bound(
    store: tuple[KeyStore, Clock], monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys, clock = store
    _, seen = keys.create(frozenset({"tags"}), "seen")
    _, unseen = keys.create(frozenset({"tags"}), "unseen")
    revoked_record, revoked = keys.create(frozenset({"tags"}), "revoked")
    other_record, other = keys.create(frozenset({"tags"}), "revoked elsewhere")
    for key in (seen, revoked, other):
        assert keys.verify(key) is not None
    keys.revoke(revoked_record.id)  # through this store: forgotten at once
    elsewhere = KeyStore(keys._engine.url.render_as_string(hide_password=False))
    elsewhere.revoke(other_record.id)  # through another replica ...
    elsewhere.close()
    assert keys.verify(other) is None  # ... and checked here while the database is up: forgotten
    clock.now += 100
    down = Down()
    monkeypatch.setattr(keys._engine, "connect", down)
    record = keys.verify(seen)
    assert record is not None and record.name == "seen"
    for key in (unseen, revoked, other):
        with pytest.raises(OperationalError):
            keys.verify(key)
    assert keys.verify(seen) is not None
    assert down.tries == 4  # the remembered key: found down once, then not tried for OUTAGE_RECHECK_S
    assert keys.verify("tsk_not-a-key") is None  # malformed: refused without the database
    assert keys.ping() is not None and keys.ping().startswith("unavailable")  # type: ignore[union-attr]
    clock.now += 201  # 301 s since the database last said the key is active
    with pytest.raises(OperationalError):
        keys.verify(seen)
    monkeypatch.undo()
    assert keys.ping() is None
    clock.now += 2  # past the recheck pause: the database is asked again, and answers
    assert keys.verify(seen) is not None and keys.verify(unseen) is not None


def test_no_outage_cache_when_its_ttl_is_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = KeyStore(tmp_path / "keys.db")
    _, key = keys.create(frozenset({"tags"}))
    assert keys.verify(key) is not None
    monkeypatch.setattr(keys._engine, "connect", Down())
    with pytest.raises(OperationalError):
        keys.verify(key)
    monkeypatch.undo()
    keys.close()
