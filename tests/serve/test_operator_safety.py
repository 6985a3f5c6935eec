"""Operator safety (issue 18, finding 8): owner-only modes for the data directory and its
databases, and no way to lock every admin out by revoking keys."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serve.cli.keys_cmd import app as keys_app
from serve.keys import KeyStore, LastAdminKey, key_store_path
from serve.state import open_state
from tests.serve.helpers import assert_error, auth, make_keys, running_app, service_settings

DATABASES = ("keys.db", "feedback.db", "taxonomy.db", "jobs/jobs.db")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The common default umask, under which files would be created world-readable."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("umask_022")
def test_a_new_data_dir_is_0700_and_its_databases_0600(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "data"
    state = open_state(service_settings(data, auth={"dev_mode": True}))
    state.close()
    assert mode(data) == 0o700
    for name in DATABASES:
        assert mode(data / name) == 0o600, name
    for sidecar in data.glob("*.db-*"):  # SQLite's -wal / -shm take the database's mode
        assert mode(sidecar) & 0o077 == 0, sidecar


@pytest.mark.usefixtures("umask_022")
def test_an_existing_loose_data_dir_is_tightened_at_start_up(shop_dir: Path) -> None:
    shop_dir.chmod(0o755)
    (shop_dir / "taxonomy.db").chmod(0o644)  # as an older version (or `tagsmith taxonomy`) left it
    make_keys(shop_dir)
    with running_app(service_settings(shop_dir)):
        pass
    assert mode(shop_dir) == 0o700
    for name in DATABASES:
        assert mode(shop_dir / name) == 0o600, name


def key_id(key: str) -> str:
    return key.split("_")[1]


def test_a_key_cannot_revoke_itself_and_one_admin_key_always_stays(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    admin = keys["admin"]
    with running_app(service_settings(shop_dir)) as client:
        own = assert_error(client.delete(f"/v1/keys/{key_id(admin)}", headers=auth(admin)), 409, "conflict")
        assert "making this request" in own["message"]
        # with two admin keys, one may revoke the other
        second = client.post("/v1/keys", json={"scopes": ["admin"], "name": "second"}, headers=auth(admin)).json()
        assert client.delete(f"/v1/keys/{key_id(admin)}", headers=auth(second["key"])).status_code == 200
        assert_error(client.get("/v1/keys", headers=auth(admin)), 401, "unauthorized")
        # revoking non-admin keys is unaffected, and so is an already revoked admin key
        assert client.delete(f"/v1/keys/{key_id(keys['tags'])}", headers=auth(second["key"])).status_code == 200
        assert client.delete(f"/v1/keys/{key_id(admin)}", headers=auth(second["key"])).status_code == 200
        # `second` is now the last active admin key: only itself could revoke it, which is refused
        assert_error(client.delete(f"/v1/keys/{second['id']}", headers=auth(second["key"])), 409, "conflict")
        assert client.get("/v1/keys", headers=auth(second["key"])).status_code == 200
    store = KeyStore(key_store_path(shop_dir))
    try:
        with pytest.raises(LastAdminKey):
            store.revoke(second["id"])
        assert store.get(second["id"]).active  # type: ignore[union-attr]
    finally:
        store.close()


def test_the_last_admin_key_is_refused_over_the_api_even_to_a_configured_admin(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    secret = "k" * 8 + "Q3x9-v2Lr0pZ8mN4tY6wB1cE5"
    with running_app(service_settings(shop_dir, auth={"admin_key": secret})) as client:
        error = assert_error(client.delete(f"/v1/keys/{key_id(keys['admin'])}", headers=auth(secret)), 409, "conflict")
        assert "last active admin key" in error["message"] and "--force" in error["message"]
        assert client.get("/v1/keys", headers=auth(keys["admin"])).status_code == 200


@pytest.mark.usefixtures("umask_022")
def test_cli_refuses_the_last_admin_key_unless_forced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGSMITH_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    made = runner.invoke(keys_app, ["create", "--scopes", "admin"])
    assert made.exit_code == 0, made.output
    admin_id = key_id(made.stdout.strip().splitlines()[-1])
    assert mode(tmp_path / "data") == 0o700 and mode(tmp_path / "data" / "keys.db") == 0o600
    refused = runner.invoke(keys_app, ["revoke", admin_id])
    message = " ".join(refused.output.split())
    assert refused.exit_code == 1 and "last active admin key" in message and "--force" in message
    store = KeyStore(key_store_path(tmp_path / "data"))
    try:
        assert store.get(admin_id) is not None and store.get(admin_id).active  # type: ignore[union-attr]
        forced = runner.invoke(keys_app, ["revoke", admin_id, "--force"])
        assert forced.exit_code == 0, forced.output
        assert not store.has_active_keys()
    finally:
        store.close()


@pytest.mark.usefixtures("umask_022")
def test_cli_commands_that_create_the_data_dir_make_it_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from serve.cli.taxonomy_cmd import app as taxonomy_app

    monkeypatch.setenv("TAGSMITH_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(taxonomy_app, ["versions"])  # opens (so creates) the store
    assert result.exit_code == 1 and "store is empty" in result.output, result.output
    assert mode(tmp_path / "data") == 0o700 and mode(tmp_path / "data" / "taxonomy.db") == 0o600
