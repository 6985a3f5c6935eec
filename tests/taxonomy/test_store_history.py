"""Old versions and comparisons are cached in the store: bounded, built once, off the writers' lock."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

import taxonomy.store as store_module
from taxonomy import RenameNode, Snapshot, TaxonomyStore
from tests.taxonomy.helpers import apparel_document


def make_store(tmp_path: Path, versions: int = 6, **kwargs: Any) -> TaxonomyStore:
    """Version 1 imported, then one rename per version; checkpoints only at the import."""
    store = TaxonomyStore(f"sqlite:///{tmp_path / 'taxonomy.db'}", checkpoint_every=1000, **kwargs)
    store.import_document(apparel_document())
    for v in range(1, versions):
        store.apply([RenameNode(id="shirts", name=f"Shirts {v}")], expected_version=v)
    return store


class BuildSpy:
    """Counts (and can hold up) the store's rebuilds of old versions."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[int, int | None]] = []
        self.gate = threading.Event()
        self.gate.set()
        original = TaxonomyStore._build

        def build(store: TaxonomyStore, conn: Any, version: int, base: Snapshot | None) -> Snapshot:
            self.calls.append((version, None if base is None else base.version))
            self.gate.wait(120)  # bounded; longer than the test waits for a blocked edit
            return original(store, conn, version, base)

        monkeypatch.setattr(TaxonomyStore, "_build", build)


def test_second_diff_and_migration_map_neither_rebuild_nor_recompare(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = make_store(tmp_path)
    fresh = TaxonomyStore(store.url)  # another process: nothing of the history in memory yet
    builds = BuildSpy(monkeypatch)
    compared: list[str] = []
    for name in ("diff_snapshots", "migration_map"):
        original = getattr(store_module, name)

        def spy(old: Snapshot, new: Snapshot, _name: str = name, _original: Any = original) -> Any:
            compared.append(_name)
            return _original(old, new)

        monkeypatch.setattr(store_module, name, spy)
    assert not fresh.cached_comparison("diff", 2, 6)
    first = fresh.diff(2, 6)
    assert [r.new_name for r in first.renamed] == ["Shirts 5"]
    assert fresh.cached_comparison("diff", 2, 6) and not fresh.cached_comparison("migration_map", 2, 6)
    mapping = fresh.migration_map(2, 6)
    assert mapping == {"old-fruit": "fruit"}
    assert [v for v, _ in builds.calls] == [2] and compared == ["diff_snapshots", "migration_map"]
    assert fresh.diff(2, 6) is first
    mapping["tops"] = "mutated by a caller"
    assert fresh.migration_map(2, 6) == {"old-fruit": "fruit"}  # callers get their own dict
    assert [v for v, _ in builds.calls] == [2] and compared == ["diff_snapshots", "migration_map"]


def test_old_versions_are_replayed_from_the_nearest_one_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = make_store(tmp_path)
    fresh = TaxonomyStore(store.url)
    builds = BuildSpy(monkeypatch)
    assert fresh.snapshot(2).node("shirts").name == "Shirts 1"
    assert fresh.snapshot(4).node("shirts").name == "Shirts 3"
    assert fresh.snapshot(4) is fresh.cached_snapshot(4)
    assert builds.calls == [(2, None), (4, 2)]  # v4 replays two edits on v2, not the whole log


def test_the_history_is_bounded_by_its_node_budget(tmp_path: Path) -> None:
    weight = len(apparel_document().nodes) + sum(len(a.values) for a in apparel_document().attributes)
    store = make_store(tmp_path, versions=8, history_budget=3 * weight)
    for v in (1, 2, 3, 4, 5):
        store.snapshot(v)
    assert [v for v in (1, 2, 3, 4, 5) if store.cached_snapshot(v) is not None] == [3, 4, 5]
    store.snapshot(3)  # a hit makes it the most recent: 4 goes next
    store.snapshot(6)
    assert [v for v in (3, 4, 5, 6) if store.cached_snapshot(v) is not None] == [3, 5, 6]
    tiny = make_store(tmp_path / "tiny", versions=3, history_budget=1)
    tiny.snapshot(1)
    assert tiny.cached_snapshot(1) is not None  # the last one built is always kept


def test_concurrent_reads_of_one_old_version_build_it_once_and_never_block_edits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = make_store(tmp_path)
    builds = BuildSpy(monkeypatch)
    builds.gate.clear()  # the first rebuild stalls until released
    results: list[Snapshot] = []
    readers = [threading.Thread(target=lambda: results.append(store.snapshot(3))) for _ in range(4)]
    for t in readers:
        t.start()
    deadline = time.monotonic() + 60
    while not builds.calls and time.monotonic() < deadline:  # bounded: until the first reader is inside its rebuild
        time.sleep(0.01)
    assert builds.calls == [(3, None)]
    # an edit (and the current version) goes through while the rebuild is stuck
    edited: list[Snapshot] = []
    writer = threading.Thread(
        target=lambda: edited.append(store.apply([RenameNode(id="fruit", name="Fresh fruit")], expected_version=6))
    )
    writer.start()
    writer.join(60)  # a blocked edit would wait for the gate: 60 s, not a busy machine's stall
    stuck = writer.is_alive()
    builds.gate.set()
    writer.join(60)
    assert not stuck, "the edit waited for an old version's rebuild"
    assert store.current() is edited[0] and edited[0].version == 7
    for t in readers:
        t.join(60)
    assert len(results) == 4 and all(r is results[0] for r in results)
    assert [v for v, _ in builds.calls if v == 3] == [3]
