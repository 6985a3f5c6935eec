"""``tagsmith db copy``: a single-machine installation (SQLite files, made through the service)
into a shared database (a shared SQLite file; PostgreSQL in the postgres tier), every row kept:
a replica started on the database serves what the one machine served (taxonomy versions, the
keys, the feedback example in its index, the review item, the job's results, the crosswalk and
its taxonomy), writes after the copy (sequences reset), a non-empty target is refused, and an
error before the commit leaves the target as it was."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, table, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

import serve.db_copy
from serve.cli import app as cli
from serve.database import open_engine
from taxonomy import TaxonomyStore
from taxonomy.crosswalk_catalog import CrosswalkCatalog
from tests.serve.helpers import auth, copy_data_dir, make_keys, running_app, service_settings
from tests.serve.test_crosswalks_api import PUBLISHED, SKILLET, google_like
from tests.serve.test_jobs import jsonl, wait_for

TRAIN = {"id": "sku-train", "title": "Wooden toy train set with 40 tracks and a bridge"}
SIMILAR = {"title": "Wooden train set toy with tracks and bridge for kids"}
#: every answer flagged, so that a tagged product enters the review queue
FLAG_ALL = {"review_threshold": 0.999}
RENAME = {"edits": [{"op": "rename", "id": "kitchen/cookware/pans", "name": "Skillets & Frying Pans"}]}


def _tag(client: Any, key: str, product: dict[str, Any], query: str = "") -> dict[str, Any]:
    r = client.post(f"/v1/tags{query}", json=product, headers=auth(key))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _seen(client: Any, keys: dict[str, str], job_id: str, item_id: str) -> dict[str, Any]:
    """What the service shows of the installation's state (compared before and after the copy)."""
    t, r = keys["tags"], keys["admin"]
    job = wait_for(client, job_id, auth(t), {"completed"})
    return {
        "versions": [(v["version"], v["kind"], v["author"]) for v in
                     client.get("/v1/taxonomy/versions", headers=auth(r)).json()["items"]],
        "example": client.get("/v1/examples/sku-train", headers=auth(keys["feedback"])).json()["tags"],
        "examples": client.get("/v1/examples?limit=1", headers=auth(keys["feedback"])).json()["total"],
        "feedback": [f["id"] for f in client.get("/v1/feedback", headers=auth(keys["feedback"])).json()["items"]],
        "answer": _tag(client, t, SIMILAR)["tags"][0]["id"],
        "crosswalk": _tag(client, t, SKILLET, "?crosswalk=t")["crosswalk"],
        "job": (job["state"], job["counts"]),
        "results": client.get(f"/v1/jobs/{job_id}/results", headers=auth(t)).text,
        "review": client.get(f"/v1/review/items/{item_id}", headers=auth(r)).json()["product"],
    }


@pytest.fixture(scope="module")
def installation(shop_template: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A data directory used through the service on one machine: a taxonomy edit, keys, a
    feedback example (a new index generation), a review item, a completed job, a crosswalk
    to a second taxonomy; and what the service showed of it."""
    data = copy_data_dir(shop_template, tmp_path_factory.mktemp("one-machine") / "data")
    with TaxonomyStore(service_settings(data).taxonomy_db_url) as store, CrosswalkCatalog(data, store) as catalog:
        catalog.import_taxonomy("gtest", google_like())
    keys = make_keys(data)
    with running_app(service_settings(data, tagging=FLAG_ALL)) as client:
        w, t = auth(keys["taxonomy:write"]), keys["tags"]
        assert client.post("/v1/taxonomy/edits", json=RENAME, headers={**w, "If-Match": "*"}).status_code == 201
        assert client.put("/v1/crosswalks/t", json={"crosswalk": PUBLISHED}, headers=w).status_code in (200, 201)
        right = "toys/blocks" if _tag(client, t, SIMILAR)["tags"][0]["id"] != "toys/blocks" else "toys/puzzles"
        fb = client.post("/v1/feedback", json={"product": TRAIN, "verdict": "correct", "tags": [right]},
                         headers=auth(keys["feedback"]))
        assert fb.status_code == 201, fb.text
        _tag(client, t, {"id": "sku-kite", "title": "Stunt kite"}, "?review=true")
        assert client.app.state.tagsmith.review_enqueuer.flush(10)  # type: ignore[attr-defined]
        items = client.get("/v1/review/items", headers=auth(keys["admin"])).json()["items"]
        item_id = next(i["id"] for i in items if i["product"].get("id") == "sku-kite")
        assert client.post(f"/v1/review/items/{item_id}/claim", headers=auth(keys["admin"])).status_code == 200
        job = client.post("/v1/jobs", content=jsonl(3), headers={**auth(t), "content-type": "application/jsonl"}).json()
        seen = _seen(client, keys, job["id"], item_id)
    assert seen["example"] == [right] and seen["answer"] == right and seen["crosswalk"]["status"] == "mapped"
    assert [v[0] for v in seen["versions"]] == [1, 2]
    return data, {"keys": keys, "job": job["id"], "item": item_id, "seen": seen}


def _rows(url: str) -> dict[str, int]:
    """Rows of every table of the target database (its taxonomy schemas included), the new
    taxonomy store's head row and the version tables left out; plus the taxonomy files
    beside a shared SQLite file."""
    found: dict[str, int] = {}
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            schemas = [None, *(s for s in inspect(conn).get_schema_names() if s.startswith("tax_"))]
            for schema in schemas:
                for name in inspect(conn).get_table_names(schema=schema):
                    if name.startswith("alembic_version_"):
                        continue
                    n = conn.execute(select(func.count()).select_from(table(name, schema=schema))).scalar_one()
                    if name == "taxonomy_head":
                        n -= conn.execute(text(f"SELECT count(*) FROM {schema + '.' if schema else ''}taxonomy_head "
                                               "WHERE version = 0")).scalar_one()
                    found[f"{schema}.{name}" if schema else name] = n
            found["tax_ schemas"] = len(schemas) - 1
    finally:
        engine.dispose()
    database = make_url(url).database
    if make_url(url).get_backend_name() == "sqlite" and database:
        found["taxonomy files"] = len(list((Path(database).parent / "taxonomies").glob("*.db")))
    return found


def _untouched(url: str) -> bool:
    """No table in the target (a shared SQLite file not even created)."""
    database = make_url(url).database
    if make_url(url).get_backend_name() == "sqlite":
        return database is not None and not Path(database).exists()
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            return not inspect(conn).get_table_names()
    finally:
        engine.dispose()


@pytest.fixture
def replica(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A replica's new, empty data directory, the CLI configured for the shared database."""
    monkeypatch.setenv("TAGSMITH_DATA_DIR", str(tmp_path / "replica"))
    monkeypatch.setenv("TAGSMITH_DATABASE_URL", database_url)
    yield tmp_path / "replica"


def test_a_single_machine_installation_moves_into_the_shared_database(
    installation: tuple[Path, dict[str, Any]], replica: Path, database_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    template, expected = installation
    source = copy_data_dir(template, tmp_path / "one-machine")
    keys: dict[str, str] = expected["keys"]
    runner = CliRunner()

    dry = runner.invoke(cli, ["db", "copy", "--from", str(source), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "review_items 1" in dry.output and "job_results 3" in dry.output and "dry run" in dry.output
    assert "index generation gen-000002" in dry.output  # the feedback example's generation
    assert _untouched(database_url)

    # an error mid-copy (the jobs' items), and one after every row and the index generation
    # are written, before the commit: either way the target is left as it was
    real_insert, real_publish = serve.db_copy._insert, serve.db_copy._publish

    def insert_or_fail(conn: Any, into: Any, rows: Any) -> None:
        if into.name == "job_items":
            raise RuntimeError("injected failure")
        real_insert(conn, into, rows)

    def publish_then_fail(*args: Any) -> Any:
        real_publish(*args)
        raise RuntimeError("injected failure")

    for where, injected in (("_insert", insert_or_fail), ("_publish", publish_then_fail)):
        with monkeypatch.context() as patched:
            patched.setattr(serve.db_copy, where, injected)
            failed = runner.invoke(cli, ["db", "copy", "--from", str(source)])
        assert isinstance(failed.exception, RuntimeError), failed.output
        assert "taxonomy_versions 2" in failed.output  # stores before the failure were written...
        left = _rows(database_url)
        assert left["api_keys"] == 0 and left["taxonomy_versions"] == 0, left
        assert set(left.values()) == {0}, left  # ...but not committed; no taxonomy schema or file left

    monkeypatch.setattr(serve.db_copy, "BATCH_ROWS", 2)  # several batches a table, and a remainder
    done = runner.invoke(cli, ["db", "copy", "--from", str(source)])  # again: safe after a failure
    assert done.exit_code == 0, done.output
    for line in ("api_keys 5", "taxonomy_versions 2", "feedback 1", "review_items 1", "review_events",
                 "job_results 3", "crosswalk_versions 1", "gen-000002 -> gen-000001, examples 40"):
        assert line in done.output, done.output
    assert "taxonomy:gtest" in done.output
    copied = _rows(database_url)
    assert copied["ui_sessions"] == 0 and copied["index_generations"] == 1

    again = runner.invoke(cli, ["db", "copy", "--from", str(source)])
    assert again.exit_code == 1
    assert "not empty: store taxonomy, table taxonomy_versions holds 2" in again.output, again.output
    assert _rows(database_url) == copied

    shutil.rmtree(source)  # the replica needs nothing of the old machine
    settings = service_settings(replica, database={"url": database_url}, tagging=FLAG_ALL)
    with running_app(settings) as client:
        assert _seen(client, keys, expected["job"], expected["item"]) == expected["seen"]
        # writes after the copy: review events (an integer id sequence), a taxonomy version,
        # feedback publishing a generation on the copied one, a key
        admin = auth(keys["admin"])
        assert client.post(f"/v1/review/items/{expected['item']}/skip", headers=admin).status_code == 200, "sequence"
        edit = {"edits": [{"op": "add_node", "id": "toys/kites", "name": "Kites", "parent": "toys"}]}
        assert client.post("/v1/taxonomy/edits", json=edit,
                           headers={**auth(keys["taxonomy:write"]), "If-Match": '"2"'}).status_code == 201
        more = client.post("/v1/feedback", json={"product": {"id": "sku-kite-2", "title": "Stunt kite"},
                                                 "verdict": "correct", "tags": ["toys/puzzles"]},
                           headers=auth(keys["feedback"]))
        assert more.status_code == 201, more.text
        f = auth(keys["feedback"])
        assert client.get("/v1/examples/sku-kite-2", headers=f).json()["tags"] == ["toys/puzzles"]
        assert client.get("/v1/examples?limit=1", headers=f).json()["total"] == expected["seen"]["examples"] + 1
        assert client.post("/v1/keys", json={"name": "new", "scopes": ["tags"]}, headers=admin).status_code == 201
    assert _rows(database_url)["review_events"] > copied["review_events"]


def test_db_copy_refuses_without_a_target_or_a_source_installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAGSMITH_DATABASE_URL", raising=False)
    runner = CliRunner()
    nowhere = runner.invoke(cli, ["db", "copy", "--from", str(tmp_path)])
    assert nowhere.exit_code == 1 and "database.url" in nowhere.output, nowhere.output
    monkeypatch.setenv("TAGSMITH_DATABASE_URL", f"sqlite:///{tmp_path / 'shared' / 'state.db'}")
    empty = runner.invoke(cli, ["db", "copy", "--from", str(tmp_path)])
    assert empty.exit_code == 1 and "not a tagsmith data directory" in empty.output, empty.output
    assert not (tmp_path / "shared").exists()  # nothing made
    (tmp_path / "taxonomy.db").touch()
    (tmp_path / "keys.db").touch()
    monkeypatch.setenv("TAGSMITH_DATABASE_URL", f"sqlite:///{tmp_path / 'keys.db'}")
    itself = runner.invoke(cli, ["db", "copy", "--from", str(tmp_path)])
    assert itself.exit_code == 1 and "the target of the keys store is its source file" in itself.output, itself.output
