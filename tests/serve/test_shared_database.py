"""Two service instances (replicas, in-process here) with their own data directories and one
database (``database.url``): a key made through one works on the other, a revocation counts on
both at once, and a taxonomy edit through one makes the other's ``If-Match`` stale (412).
On SQLite (one file both open) in the default tier, on PostgreSQL in the postgres tier."""

from __future__ import annotations

import shutil
from pathlib import Path

from serve.keys import KeyStore
from tests.serve.helpers import assert_error, auth, running_app, seed_data_dir, service_settings

RENAME = {"edits": [{"op": "rename", "id": "kitchen/cookware/pots", "name": "Pots & Pans"}]}
DEPRECATE = {"edits": [{"op": "deprecate", "id": "kitchen/cookware/pans", "replaced_by": "kitchen/cookware/pots"}]}


def test_two_replicas_share_keys_and_taxonomy_versions(database_url: str, tmp_path: Path) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    seed_data_dir(a_dir, database={"url": database_url})  # the taxonomy goes to the database
    shutil.copytree(a_dir / "index", b_dir / "index")  # index generations stay files, per replica
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
