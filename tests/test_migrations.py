"""Schema migrations (taxonomy/migrations, serve/migrations.py, ``tagsmith db``): an empty
database to every store's head, a database from before migrations adopted with its rows,
no drift between the migrations and the tables in the code, a newer database refused,
``database.auto_upgrade``; on PostgreSQL also replicas upgrading together."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, inspect, text
from typer.testing import CliRunner

from serve.cli import app
from serve.database import open_engine
from serve.migrations import ALL_SCHEMAS
from taxonomy.migrations import (
    SchemaTooNew,
    StoreSchema,
    UpgradePending,
    drift,
    ensure_schema,
    head,
    state,
    upgrade,
)

runner = CliRunner()
#: the columns the stores' old "ADD COLUMN if missing" steps added: (table, column)
AD_HOC = {"feedback": ("feedback", "attribute_values"), "review": ("review_items", "revision"),
          "jobs": ("jobs", "review")}


def _drift_free(engine: Engine, schemas: list[StoreSchema]) -> None:
    with engine.connect() as conn:
        for schema in schemas:
            assert drift(conn, schema) == [], f"{schema.name}: the migrations and the tables in the code differ"


def test_an_empty_database_is_brought_to_every_stores_head_without_drift(database_url: str) -> None:
    """All stores in one database (as with database.url): each reaches its head in its own
    version table, and autogenerate finds nothing to change: a Table changed without a
    migration fails here."""
    schemas = list(ALL_SCHEMAS.values())
    engine = open_engine(database_url)
    try:
        for schema in schemas:
            before, after = upgrade(engine, schema)
            assert (before.current, before.legacy) == (None, False)
            assert after.current == head(schema) == f"{schema.name}_0001" and not after.pending
        _drift_free(engine, schemas)
        for schema in schemas:  # again: nothing to do
            before, after = upgrade(engine, schema)
            assert before.current == after.current == head(schema)
        tables = set(inspect(engine).get_table_names())
        assert {f"alembic_version_{s.name}" for s in schemas} <= tables
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id, version FROM taxonomy_head")).all() == [(1, 0)]
    finally:
        engine.dispose()


def test_the_drift_check_sees_a_table_changed_without_a_migration(tmp_path: Path) -> None:
    keys = ALL_SCHEMAS["keys"]
    changed = MetaData()
    table = keys.metadata.tables["api_keys"].to_metadata(changed)
    table.append_column(Column("last_used", Integer))
    engine = open_engine(tmp_path / "keys.db")
    try:
        upgrade(engine, keys)
        with engine.connect() as conn:
            found = drift(conn, keys, changed)
        assert [d[0] for d in found] == ["add_column"] and found[0][3].name == "last_used"
    finally:
        engine.dispose()


def _legacy_database(engine: Engine) -> None:
    """Every store's tables as ``create_all`` made them before migrations, without the
    columns the old ad-hoc steps added, with a row in each changed table."""
    for schema in ALL_SCHEMAS.values():
        schema.metadata.create_all(engine)
    with engine.begin() as conn:
        for table, column in AD_HOC.values():
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        conn.execute(text("INSERT INTO taxonomy_head (id, version) VALUES (1, 7)"))
        conn.execute(text("INSERT INTO feedback (id, example_id, verdict, tags, product, reviewer, taxonomy_version, "
                          "created_at) VALUES ('fb_old', 'ex-1', 'accept', '[]', '{}', 'k', 1, '2026-01-01 00:00:00')"))
        conn.execute(text(
            "INSERT INTO review_items (id, dedup_key, pending_key, status, product, result, confidence, "
            "runner_up_confidence, taxonomy_version, source, times_enqueued, created_at, changed_at) VALUES "
            "('rv_old', 'd', 'd', 'open', '{}', '{}', 0.4, 0.1, 1, 'api', 1, '2026-01-01 00:00:00', "
            "'2026-01-01 00:00:00')"))
        conn.execute(text("INSERT INTO jobs (id, owner, state, created_at, total, succeeded, failed, request_sha256) "
                          "VALUES ('job_old', 'k', 'completed', '2026-01-01 00:00:00', 1, 1, 0, 'x')"))


def test_a_database_from_before_migrations_is_adopted_with_its_rows(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "old.db")
    try:
        _legacy_database(engine)
        for schema in ALL_SCHEMAS.values():
            before, after = upgrade(engine, schema)
            assert before.current is None and before.legacy and before.describe().startswith("pre-migrations")
            assert after.current == head(schema)
        _drift_free(engine, list(ALL_SCHEMAS.values()))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version FROM taxonomy_head")).all() == [(7,)]  # not reset
            assert conn.execute(text("SELECT id, attribute_values FROM feedback")).all() == [("fb_old", None)]
            assert conn.execute(text("SELECT id, revision FROM review_items")).all() == [("rv_old", 1)]
            assert conn.execute(text("SELECT id, review FROM jobs")).all() == [("job_old", None)]
    finally:
        engine.dispose()


def test_a_database_newer_than_the_code_is_refused_untouched(tmp_path: Path) -> None:
    from serve.keys import KeyStore

    path = tmp_path / "keys.db"
    KeyStore(path).close()
    engine = open_engine(path)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version_keys SET version_num = 'keys_0099'"))
        with pytest.raises(SchemaTooNew) as refused:
            KeyStore(path)
        assert "keys_0099" in str(refused.value) and "keys_0001" in str(refused.value)
        with pytest.raises(SchemaTooNew):
            upgrade(engine, ALL_SCHEMAS["keys"])
        assert state(engine, ALL_SCHEMAS["keys"]).current == "keys_0099"
    finally:
        engine.dispose()


def test_without_auto_upgrade_a_pending_schema_refuses_until_db_upgrade(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "keys.db")
    try:
        with pytest.raises(UpgradePending, match="tagsmith db upgrade"):
            ensure_schema(engine, ALL_SCHEMAS["keys"], upgrade_allowed=False)
        assert state(engine, ALL_SCHEMAS["keys"]).current is None  # nothing created
        upgrade(engine, ALL_SCHEMAS["keys"])
        ensure_schema(engine, ALL_SCHEMAS["keys"], upgrade_allowed=False)  # at head: fine
    finally:
        engine.dispose()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("TAGSMITH_DATABASE_URL", raising=False)
    monkeypatch.delenv("TAGSMITH_DATABASE__URL", raising=False)
    monkeypatch.setenv("TAGSMITH_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_db_current_and_upgrade_report_each_store(data_dir: Path) -> None:
    pending = runner.invoke(app, ["db", "current"])
    assert pending.exit_code == 3 and "run `tagsmith db upgrade`" in pending.output, pending.output
    assert "keys" in pending.output and "upgrade pending -> keys_0001" in pending.output
    done = runner.invoke(app, ["db", "upgrade"])
    assert done.exit_code == 0, done.output
    assert "empty -> jobs_0001" in done.output and "schema up to date" in done.output
    assert (data_dir / "jobs").stat().st_mode & 0o077 == 0
    again = runner.invoke(app, ["db", "upgrade"])
    assert again.exit_code == 0 and again.output.count("up to date") == 6, again.output  # 5 stores + summary
    now = runner.invoke(app, ["db", "current"])
    assert now.exit_code == 0 and now.output.count("at head") == 5, now.output
    sql = runner.invoke(app, ["db", "upgrade", "--sql"])
    assert sql.exit_code == 1 and "needs a shared database" in sql.output


def test_db_upgrade_adopts_the_crosswalk_and_named_taxonomy_files(data_dir: Path) -> None:
    """crosswalks.db and taxonomies/NAME.db, as a release before migrations made them."""
    (data_dir / "taxonomies").mkdir(parents=True)
    for path, schema in ((data_dir / "crosswalks.db", ALL_SCHEMAS["crosswalks"]),
                         (data_dir / "taxonomies" / "google.db", ALL_SCHEMAS["taxonomy"])):
        engine = open_engine(path)
        schema.metadata.create_all(engine)
        engine.dispose()
    done = runner.invoke(app, ["db", "upgrade"])
    assert done.exit_code == 0, done.output
    lines = {line.split()[0]: line for line in done.output.splitlines() if line.strip()}
    assert "pre-migrations (no version table) -> crosswalks_0001" in lines["crosswalks"]
    assert "pre-migrations (no version table) -> taxonomy_0001" in lines["taxonomy:google"]
    now = runner.invoke(app, ["db", "current"])
    assert now.exit_code == 0 and now.output.count("at head") == 7, now.output


def test_cli_refuses_a_newer_schema_and_a_pending_one_without_auto_upgrade(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TAGSMITH_DATABASE__AUTO_UPGRADE", "false")
    refused = runner.invoke(app, ["keys", "list"])
    assert refused.exit_code == 2 and "run `tagsmith db upgrade`" in refused.output, refused.output
    assert "Traceback" not in refused.output
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    assert runner.invoke(app, ["keys", "list"]).exit_code == 0
    engine = open_engine(data_dir / "review.db")
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version_review SET version_num = 'review_0042'"))
    engine.dispose()
    newer = runner.invoke(app, ["keys", "list"])
    assert newer.exit_code == 2 and "review_0042" in newer.output and "review_0001" in newer.output, newer.output
    current = runner.invoke(app, ["db", "current"])
    assert current.exit_code == 1 and "NEWER than this release" in current.output


def test_the_service_refuses_to_start_on_a_pending_schema_without_auto_upgrade(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from serve.settings import load_settings
    from serve.state import StartupRefused, open_state

    settings = load_settings(data_dir=data_dir, auth={"dev_mode": True}, database={"auto_upgrade": False})
    with pytest.raises(StartupRefused, match="tagsmith db upgrade"):
        open_state(settings)


@pytest.mark.postgres
def test_replicas_upgrading_together_apply_each_migration_once(postgres_url: str) -> None:
    """Three "replicas", each with its own engine, upgrade every store of one empty
    PostgreSQL database at the same moment: the advisory lock lets one apply each store's
    migrations; the others find the head."""
    schemas = list(ALL_SCHEMAS.values())
    barrier = threading.Barrier(3)
    applied: list[str] = []
    failures: list[str] = []

    def replica() -> None:
        engine = open_engine(postgres_url)
        try:
            barrier.wait(timeout=30)
            for schema in schemas:
                before, after = upgrade(engine, schema)
                assert after.current == head(schema)
                if before.current != after.current:
                    applied.append(schema.name)
        except Exception as exc:  # reported by the main thread
            failures.append(repr(exc))
        finally:
            engine.dispose()

    threads = [threading.Thread(target=replica) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert sorted(applied) == sorted(s.name for s in schemas)  # each store once
    engine = open_engine(postgres_url)
    try:
        _drift_free(engine, schemas)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_db_upgrade_sql_prints_the_shared_databases_upgrade(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlalchemy.engine import make_url

    monkeypatch.setenv("TAGSMITH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TAGSMITH_DATABASE_URL", postgres_url)
    done = runner.invoke(app, ["db", "upgrade", "--sql"])
    assert done.exit_code == 0, done.output
    assert "CREATE TABLE api_keys" in done.output and "alembic_version_keys" in done.output
    assert "-- ui_sessions: empty -> ui_sessions_0001" in done.output
    assert str(make_url(postgres_url).password) not in done.output
    engine = open_engine(postgres_url)
    try:
        assert inspect(engine).get_table_names() == []  # printed, not run
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_an_upgrade_waits_for_the_schema_lock_another_process_holds(postgres_url: str) -> None:
    from taxonomy.migrations import SCHEMA_LOCK

    keys = ALL_SCHEMAS["keys"]
    holder, engine = open_engine(postgres_url), open_engine(postgres_url)
    try:
        with holder.connect() as held:
            held.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK})  # "another replica"
            done: list[str | None] = []
            upgrading = threading.Thread(target=lambda: done.append(upgrade(engine, keys)[1].current))
            upgrading.start()
            upgrading.join(timeout=0.5)
            assert upgrading.is_alive() and state(holder, keys).current is None  # waiting, nothing written
            held.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK})
            held.commit()
        upgrading.join(timeout=30)
        assert done == [head(keys)]
    finally:
        holder.dispose()
        engine.dispose()


@pytest.mark.postgres
def test_a_store_in_its_own_postgresql_schema_has_its_own_history(postgres_url: str) -> None:
    """Two taxonomy stores in one database, the second's tables in PostgreSQL schema
    ``tax_google`` (an engine with ``schema_translate_map``): each migrated in its own schema,
    with its own version table."""
    taxonomy = ALL_SCHEMAS["taxonomy"]
    engine = open_engine(postgres_url)
    try:
        ensure_schema(engine, taxonomy)
        with engine.begin() as conn:
            conn.execute(text('CREATE SCHEMA "tax_google"'))
        other = engine.execution_options(schema_translate_map={None: "tax_google"})
        assert state(other, taxonomy).current is None  # not the default schema's history
        ensure_schema(other, taxonomy)
        assert state(other, taxonomy).current == head(taxonomy)
        found = set(inspect(engine).get_table_names(schema="tax_google"))
        assert {"taxonomy_head", "taxonomy_versions", "alembic_version_taxonomy"} <= found
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version FROM tax_google.taxonomy_head")).all() == [(0,)]
    finally:
        engine.dispose()


def test_doctor_reports_the_schema(data_dir: Path) -> None:
    from serve.cli.doctor_cmd import _schema_row
    from serve.settings import load_settings

    assert _schema_row(load_settings()) == ("upgrade pending (taxonomy, keys, feedback, review, jobs): upgraded at "
                                            "the next start", True)
    strict = load_settings(database={"auto_upgrade": False})
    assert _schema_row(strict)[1] is False and "run `tagsmith db upgrade`" in _schema_row(strict)[0]
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    assert _schema_row(strict) == ("at head (5 stores)", True)


@pytest.mark.postgres
def test_db_upgrade_covers_the_shared_crosswalks_and_their_taxonomy_schemas(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With database.url set, the crosswalk tables and each crosswalk taxonomy's schema
    (``tax_<name>``, made on first import: serve/crosswalks.py) are stores of the configuration."""
    monkeypatch.setenv("TAGSMITH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TAGSMITH_DATABASE_URL", postgres_url)
    engine = open_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(text('CREATE SCHEMA "tax_google"'))  # as a crosswalk import leaves it, tables aside
    finally:
        engine.dispose()
    done = runner.invoke(app, ["db", "upgrade"])
    assert done.exit_code == 0, done.output
    lines = {line.split()[0]: line for line in done.output.splitlines() if line.strip()}
    assert "empty -> crosswalks_0001" in lines["crosswalks"], done.output
    assert "empty -> taxonomy_0001" in lines["taxonomy:google"], done.output
    now = runner.invoke(app, ["db", "current"])
    assert now.exit_code == 0 and "taxonomy:google" in now.output, now.output
    engine = open_engine(postgres_url)
    try:
        assert "alembic_version_taxonomy" in inspect(engine).get_table_names(schema="tax_google")
    finally:
        engine.dispose()
