from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from taxonomy import (
    DEFAULT_TAXONOMY_FORMAT,
    AddNode,
    DeprecateNode,
    EditRejected,
    EmptyStore,
    MergeNodes,
    MoveNode,
    RenameNode,
    StaleVersion,
    TaxonomyStore,
    UnknownVersion,
    default_taxonomy_path,
    seed_default_taxonomy,
)
from tests.taxonomy.helpers import apparel_document


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'taxonomy.db'}"


@pytest.fixture
def store(database_url: str) -> TaxonomyStore:
    """On SQLite, and on PostgreSQL in the postgres tier (``database_url``)."""
    s = TaxonomyStore(database_url, checkpoint_every=3)
    s.import_document(apparel_document(), message="first")
    return s


def test_empty_store(database_url: str) -> None:
    with TaxonomyStore(database_url) as s:
        assert s.version == 0 and s.is_empty() and s.versions() == []
        with pytest.raises(EmptyStore, match="import"):
            s.current()
        with pytest.raises(EmptyStore):
            s.apply([AddNode(id="x", name="X", parent=None)], expected_version=0)
        with pytest.raises(UnknownVersion):
            s.snapshot(1)


def test_sqlite_runs_in_wal_with_full_sync(tmp_path: Path) -> None:
    store = TaxonomyStore(sqlite_url(tmp_path))
    with store._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_edits_make_versions_with_history(store: TaxonomyStore) -> None:
    assert store.current().version == 1
    v2 = store.apply([AddNode(id="polos", name="Polos", parent="tops")], expected_version=1, author="ann")
    v3 = store.apply([RenameNode(id="shirts", name="Dress shirts")], expected_version=2)
    v4 = store.apply([MoveNode(id="shoes", parent=None), MergeNodes(source="polos", target="tshirts")],
                     expected_version=3, message="tidy")
    assert (v2.version, v3.version, v4.version) == (2, 3, 4)
    assert store.current() is v4
    infos = store.versions()
    assert [(i.version, i.kind, i.edit_count) for i in infos] == [(1, "import", 0), (2, "edit", 1), (3, "edit", 1), (4, "edit", 2)]
    assert infos[1].author == "ann" and infos[3].message == "tidy" and infos[3].base_version == 3
    assert store.edits(4) == [MoveNode(id="shoes", parent=None), MergeNodes(source="polos", target="tshirts")]
    assert store.snapshot(2).node("shirts").name == "Shirts"  # history is immutable
    diff = store.diff(1, 4)
    assert diff.added == ["polos"]
    assert [(r.id, r.old_name, r.new_name) for r in diff.renamed] == [("shirts", "Shirts", "Dress shirts")]
    assert [(m.id, m.new_parent) for m in diff.moved] == [("shoes", None)]
    assert diff.deprecated == []  # polos was added after 1: it is in "added"
    assert [(d.id, d.replaced_by) for d in store.diff(2, 4).deprecated] == [("polos", "tshirts")]
    assert store.migration_map(2, 4) == {"polos": "tshirts", "old-fruit": "fruit"}
    assert store.migration_map(4, 4) == {"polos": "tshirts", "old-fruit": "fruit"}
    assert store.diff(4, 4).is_empty
    with pytest.raises(UnknownVersion):
        store.snapshot(9)


def test_stale_and_rejected_edits_change_nothing(store: TaxonomyStore) -> None:
    store.apply([AddNode(id="a", name="A", parent=None)], expected_version=1)
    with pytest.raises(StaleVersion) as info:
        store.apply([AddNode(id="b", name="B", parent=None)], expected_version=1)
    assert (info.value.expected, info.value.current) == (1, 2)
    with pytest.raises(EditRejected):
        store.apply([AddNode(id="b", name="B", parent=None), DeprecateNode(id="tops")], expected_version=2)
    assert store.head_version() == 2 and "b" not in store.current()
    with pytest.raises(StaleVersion):
        store.import_document(apparel_document(), expected_version=1)


def test_reopen_replays_the_log_and_matches_checkpoints(store: TaxonomyStore, database_url: str) -> None:
    for i in range(10):  # checkpoints at 1 (import), 4, 7, 10
        store.apply([AddNode(id=f"n{i}", name=f"N{i}", parent="food")], expected_version=store.version)
    expected = {v: store.snapshot(v).document for v in range(1, 12)}
    store.close()
    with TaxonomyStore(database_url) as again:
        assert again.version == 11
        for v in range(1, 12):
            assert again.snapshot(v).document == expected[v], v
    engine = create_engine(database_url)
    with engine.connect() as conn:
        checkpoints = conn.execute(text("SELECT version FROM taxonomy_checkpoints ORDER BY version")).scalars().all()
    engine.dispose()
    assert checkpoints == [1, 4, 7, 10]


def test_a_second_replica_refreshes(store: TaxonomyStore, database_url: str) -> None:
    with TaxonomyStore(database_url) as replica:
        assert replica.version == 1
        store.apply([AddNode(id="x", name="X", parent=None)], expected_version=1)
        assert replica.version == 1  # nothing happens behind a reader's back
        assert replica.refresh() == 2 and "x" in replica.current()
        # the replica's own edit against its stale view is refused, then succeeds after refresh
        store.apply([AddNode(id="y", name="Y", parent=None)], expected_version=2)
        replica._current = replica.snapshot(2)  # simulate a reader that has not refreshed
        with pytest.raises(StaleVersion):
            replica.apply([AddNode(id="z", name="Z", parent=None)], expected_version=2)
        assert replica.apply([AddNode(id="z", name="Z", parent=None)], expected_version=3).version == 4
    assert store.refresh() == 4


def test_seeding_the_packaged_default_once(database_url: str) -> None:
    with TaxonomyStore(database_url) as s:
        first = seed_default_taxonomy(s)
        assert first.version == 1 and len(first) == 10281
        assert seed_default_taxonomy(s).version == 1
        assert [v.kind for v in s.versions()] == ["import"]


@pytest.mark.slow  # a measurement on the 10,281-node taxonomy
def test_open_time_for_the_shopify_taxonomy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with TaxonomyStore(sqlite_url(tmp_path), checkpoint_every=50) as s:
        snap = s.import_taxonomy(default_taxonomy_path(), DEFAULT_TAXONOMY_FORMAT)
        parent = sorted(snap.active_ids - snap.active_leaf_ids)[0]
        for i in range(49):  # the worst case: 49 batches to replay on top of the checkpoint
            s.apply([AddNode(id=f"new{i}", name=f"New {i}", parent=parent)], expected_version=s.version)
        expected = s.current().document
    started = time.perf_counter()
    with TaxonomyStore(sqlite_url(tmp_path)) as reopened:
        elapsed = time.perf_counter() - started
        assert reopened.current().document == expected
    with capsys.disabled():  # a measurement for the report, not an assertion
        print(f"\n[taxonomy] open 10,281-node store + replay 49 batches: {elapsed * 1000:.0f} ms")


def test_attribute_edits_are_versioned_and_replayed(store: TaxonomyStore, database_url: str) -> None:
    batches: list[list[dict[str, object]]] = [
        [{"op": "define_attribute", "id": "width", "name": "Width", "open_values": True,
          "value_type": "number_with_unit", "unit": "cm",
          "normalization": {"kind": "convert_units", "target_unit": "cm", "instruction": "Convert to cm."}},
         {"op": "attach_attribute", "category": "tops", "attribute": "width"}],
        [{"op": "rename_attribute", "id": "color", "name": "Colour"},
         {"op": "rename_attribute_value", "attribute": "color", "id": "red", "name": "Crimson",
          "keep_old_name_as_synonym": True}],
        [{"op": "deprecate_attribute_value", "attribute": "color", "id": "blue", "replaced_by": "red"},
         {"op": "deprecate_attribute", "id": "brand"}],
    ]
    for batch in batches:  # checkpoint_every=3: versions 2-3 replay from the log, 4 is a checkpoint
        store.apply(batch, expected_version=store.version)
    expected = {v: store.snapshot(v).document for v in range(1, 5)}
    assert store.diff(3, 4).attributes_deprecated == ["brand"]
    store.close()
    with TaxonomyStore(database_url) as again:
        for v in range(1, 5):
            assert again.snapshot(v).document == expected[v], v
        last = again.snapshot(4)
        assert last.attributes["width"].unit == "cm" and last.attributes["brand"].deprecated
        blue = last.attributes["color"].value("blue")
        assert blue is not None and blue.replaced_by == "red"
        assert [e.op for e in again.edits(4)] == ["deprecate_attribute_value", "deprecate_attribute"]
