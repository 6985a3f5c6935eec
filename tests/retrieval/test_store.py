from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrieval import (
    Example,
    ExampleIndex,
    IndexCorruptError,
    IndexMismatchError,
    IndexStore,
    NoIndexError,
)

from .conftest import random_vectors

EMB = "fake-embedder@1"


def make_index(n: int = 10, kind: str = "flat", tag: str = "t") -> ExampleIndex:
    index = ExampleIndex(16, kind=kind)  # type: ignore[arg-type]
    index.upsert(
        [Example(f"p{i}", f"title {i}", "desc", (tag,), {"color": "red"}, "Crumb") for i in range(n)],
        random_vectors(n),
    )
    return index


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_round_trip(tmp_path: Path, kind: str) -> None:
    store = IndexStore(tmp_path)
    index = make_index(kind=kind)
    index.delete(["p3"])
    manifest = store.publish(index, embedder=EMB, taxonomy_version=7, extra={"source": "test"})
    assert (manifest.generation, manifest.count, manifest.tag_count) == ("gen-000001", 9, 1)
    loaded, m2 = store.load(embedder=EMB, dim=16)
    assert m2 == manifest and m2.taxonomy_version == 7 and m2.extra == {"source": "test"}
    assert loaded.kind == kind and sorted(loaded.ids()) == sorted(index.ids())
    assert loaded.get("p5") == index.get("p5")
    q = random_vectors(10)[[5]]
    assert [h.id for h in loaded.search(q, 4)[0]] == [h.id for h in index.search(q, 4)[0]]
    # ids stay stable across a reload: updating p5 still replaces it
    loaded.upsert([Example("p5", "new")], q)
    assert len(loaded) == 9 and loaded.get("p5") == Example("p5", "new")


def test_nothing_published(tmp_path: Path) -> None:
    with pytest.raises(NoIndexError):
        IndexStore(tmp_path / "none").load(embedder=EMB, dim=16)


def test_wrong_embedder_or_dimension_is_refused(tmp_path: Path) -> None:
    store = IndexStore(tmp_path)
    store.publish(make_index(), embedder=EMB)
    with pytest.raises(IndexMismatchError, match="built with embedder 'fake-embedder@1'"):
        store.load(embedder="other-model@2", dim=16)
    with pytest.raises(IndexMismatchError, match="dim 16"):
        store.load(embedder=EMB, dim=384)


@pytest.mark.parametrize("victim", ["index.faiss", "ids.json", "examples.jsonl"])
def test_truncated_file_is_refused(tmp_path: Path, victim: str) -> None:
    store = IndexStore(tmp_path)
    store.publish(make_index(), embedder=EMB)
    path = tmp_path / "gen-000001" / victim
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(IndexCorruptError, match="corrupted"):
        store.load(embedder=EMB, dim=16)


def test_flipped_byte_and_damaged_manifest_are_refused(tmp_path: Path) -> None:
    store = IndexStore(tmp_path)
    store.publish(make_index(), embedder=EMB)
    path = tmp_path / "gen-000001" / "index.faiss"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match="checksum"):
        store.load(embedder=EMB, dim=16)
    manifest = tmp_path / "gen-000001" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"count": 10', '"count": 11'))
    with pytest.raises(IndexCorruptError, match=r"manifest\.json does not match"):
        store.load(embedder=EMB, dim=16)
    (tmp_path / "CURRENT").write_text("garbage")
    with pytest.raises(IndexCorruptError, match="CURRENT is damaged"):
        store.load(embedder=EMB, dim=16)


def test_generations_are_switched_and_collected(tmp_path: Path) -> None:
    store = IndexStore(tmp_path)
    for n in range(1, 5):
        store.publish(make_index(n, tag=f"v{n}"), embedder=EMB)
    assert store.generations() == ["gen-000003", "gen-000004"]
    loaded, manifest = store.load(embedder=EMB, dim=16)
    assert manifest.generation == "gen-000004" and len(loaded) == 4
    # the orphan of a crashed publication and a stale staging dir are collected next time
    (tmp_path / "gen-000009").mkdir()
    (tmp_path / ".staging-1-dead").mkdir()
    store.publish(make_index(5), embedder=EMB)
    assert store.generations() == ["gen-000004", "gen-000010"]
    assert not list(tmp_path.glob(".staging-*"))
    assert json.loads((tmp_path / "gen-000010" / "manifest.json").read_text())["count"] == 5
