"""The postgres tier's server itself, and the one setting that picks the database."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from serve.database import open_engine, safe_url
from serve.settings import load_settings
from tests.postgres_server import PostgresServer


@pytest.mark.postgres
def test_the_test_server_is_unprivileged_and_on_loopback_only(postgres: PostgresServer) -> None:
    engine = open_engine(postgres.url())
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW listen_addresses")).scalar_one() == "127.0.0.1"
            data_dir = Path(conn.execute(text("SHOW data_directory")).scalar_one())
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()
    assert data_dir.stat().st_uid != 0  # the server refuses root; the cluster is nobody's
    assert os.stat(data_dir).st_mode & 0o077 == 0  # initdb's 0700


def test_database_url_picks_every_stores_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAGSMITH_DATABASE_URL", raising=False)
    monkeypatch.delenv("TAGSMITH_DATABASE__URL", raising=False)
    default = load_settings(data_dir=tmp_path)
    assert default.store_location("keys") == tmp_path / "keys.db"
    assert default.store_url("taxonomy") == f"sqlite:///{tmp_path / 'taxonomy.db'}" == default.taxonomy_db_url
    url = "postgresql+psycopg://tagsmith:s3cret@db.internal:5432/tagsmith"
    monkeypatch.setenv("TAGSMITH_DATABASE_URL", url)  # the conventional name
    shared = load_settings(data_dir=tmp_path)
    assert {shared.store_location(s) for s in ("taxonomy", "keys", "feedback", "review")} == {url}
    assert "s3cret" not in safe_url(url)
    monkeypatch.delenv("TAGSMITH_DATABASE_URL")
    monkeypatch.setenv("TAGSMITH_DATABASE__URL", url)  # the nested name, like every other setting
    assert load_settings(data_dir=tmp_path).database.url_value == url


@pytest.mark.parametrize("bad", ["mysql://x:pw-secret@y/z", "not a url pw-secret"])
def test_an_unsupported_database_url_is_refused_without_showing_it(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="database") as refused:
        load_settings(data_dir=tmp_path, database={"url": bad})
    assert "pw-secret" not in str(refused.value)


def test_db_upgrade_makes_every_table_and_adds_missing_columns(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``tagsmith db upgrade`` on an empty database and on one with an older feedback table
    (no ``attribute_values``): every store's tables, the column added, the old row kept."""
    from typer.testing import CliRunner

    from serve.cli import app

    engine = open_engine(database_url)
    with engine.begin() as conn:  # the feedback table as an older tagsmith made it, with one row
        conn.execute(text(
            "CREATE TABLE feedback (id VARCHAR(40) PRIMARY KEY, example_id VARCHAR(256) NOT NULL, "
            "verdict VARCHAR(16) NOT NULL, tags TEXT NOT NULL, product TEXT NOT NULL, note TEXT, "
            "reviewer VARCHAR(64) NOT NULL, taxonomy_version INTEGER NOT NULL, index_generation VARCHAR(40), "
            "created_at TIMESTAMP WITH TIME ZONE NOT NULL)"
        ))
        conn.execute(text("INSERT INTO feedback VALUES ('fb_old', 'ex-1', 'accept', '[\"t\"]', '{}', NULL, 'k', 1, "
                          "NULL, '2026-01-01 00:00:00+00:00')"))
    monkeypatch.setenv("TAGSMITH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TAGSMITH_DATABASE_URL", database_url)
    for _ in range(2):  # idempotent
        done = CliRunner().invoke(app, ["db", "upgrade"])
        assert done.exit_code == 0, done.output
        assert "schema up to date" in done.output
    tables = set(inspect(engine).get_table_names())
    assert {"taxonomy_head", "taxonomy_versions", "api_keys", "feedback", "review_items"} <= tables
    assert {"index_generations", "index_files", "index_blobs", "ui_sessions"} <= tables  # database only
    assert {"crosswalk_heads", "crosswalk_versions"} <= tables  # crosswalks: in the database when it is set
    assert "attribute_values" in {c["name"] for c in inspect(engine).get_columns("feedback")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM feedback")).scalars().all() == ["fb_old"]
    engine.dispose()
    if database_url.startswith("postgresql"):
        assert make_url(database_url).password not in done.output  # the password never printed


def test_db_upgrade_against_an_unreachable_database_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from serve.cli import app
    from tests.conftest import free_port

    monkeypatch.setenv("TAGSMITH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TAGSMITH_DATABASE_URL", f"postgresql+psycopg://tagsmith:hunter2-secret@127.0.0.1:{free_port()}/x")
    done = CliRunner().invoke(app, ["db", "upgrade"])
    assert done.exit_code == 1 and "unreachable" in done.output, done.output
    assert "hunter2-secret" not in done.output and "Traceback" not in done.output


def test_only_an_unreachable_or_locked_database_counts_as_unavailable(tmp_path: Path) -> None:
    """503 for "retry later" errors; a missing table (our fault) stays a 500."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from serve.database import is_unavailable

    path = tmp_path / "locked.db"
    engine = open_engine(path)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA busy_timeout=50")
            conn.commit()
            with pytest.raises(OperationalError) as locked, conn.begin():
                conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            with pytest.raises(OperationalError) as missing:
                conn.exec_driver_sql("SELECT * FROM no_such_table").all()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        engine.dispose()
    assert is_unavailable(locked.value) and not is_unavailable(missing.value)
    assert not is_unavailable(ValueError("database is locked"))


def test_replicas_starting_together_create_and_migrate_the_schema_once(database_url: str) -> None:
    """Eight "replicas" open every store at the same moment on an empty database (and the
    stores migrate their schemas under one lock): none fails on a table or column another one made."""
    import threading

    from serve.feedback import FeedbackStore
    from serve.keys import KeyStore
    from serve.review.store import ReviewStore
    from taxonomy import TaxonomyStore

    barrier = threading.Barrier(8)
    failures: list[str] = []

    def open_all() -> None:
        barrier.wait(timeout=30)
        try:
            for opened in (TaxonomyStore(database_url), KeyStore(database_url), FeedbackStore(database_url),
                           ReviewStore(url=database_url)):
                opened.close()
        except Exception as exc:  # reported by the main thread
            failures.append(repr(exc))

    threads = [threading.Thread(target=open_all) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    engine = open_engine(database_url)
    assert {"taxonomy_head", "api_keys", "feedback", "review_items"} <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM taxonomy_head")).scalar_one() == 1
    engine.dispose()
