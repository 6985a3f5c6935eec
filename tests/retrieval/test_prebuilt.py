"""Embeddings precomputed at install time (retrieval.prebuilt): a fresh data directory
finds the default taxonomy's node vectors there instead of embedding them; a damaged set or
one of another embedder is never used. A counting fake embedder stands in for MiniLM."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from retrieval import (
    CachedEmbedder,
    EmbeddingCache,
    TaxonomyIndex,
    build_index,
    node_text,
    packaged_examples,
)
from retrieval.embedder import Vectors, normalize
from retrieval.prebuilt import MANIFEST, PrebuiltVectors, build, set_dir, shipped_texts
from retrieval.text import DEFAULT_MAX_CHARS
from taxonomy import Snapshot, load_default_taxonomy


class Recorder:
    """A StartupProgress that records what build_runtime reports."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.counts: list[tuple[int, int]] = []

    def step(self, description: str) -> None:
        self.steps.append(description)

    def advance(self, done: int, total: int) -> None:
        self.counts.append((done, total))

    def done(self) -> None:
        self.steps.append("done")


class CountingEmbedder:
    """Deterministic pseudo-vectors (from the text's hash); counts the texts it encodes."""

    def __init__(self, name: str | None = None, dim: int = 8) -> None:
        self._name = name or f"counting-{uuid.uuid4().hex[:8]}"
        self._dim = dim
        self.encoded = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str]) -> Vectors:
        self.encoded += len(texts)
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[: self._dim], dtype=np.uint8) for t in texts]
        return normalize(np.asarray(rows, dtype=np.float32).reshape(len(texts), self._dim) - 127.5)


@pytest.fixture(autouse=True)
def _no_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    """TaxonomyIndex memoises node vectors per process: each test starts without them."""
    from collections import OrderedDict

    import retrieval.taxonomy_search

    monkeypatch.setattr(retrieval.taxonomy_search, "_memo", OrderedDict())


@pytest.fixture(scope="module")
def snap() -> Snapshot:
    return load_default_taxonomy()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A prebuilt set written the way `tagsmith index prebuild` writes it."""
    root = tmp_path_factory.mktemp("prebuilt")
    embedder = CountingEmbedder()
    _, n, computed = build(embedder, root)
    assert computed and embedder.encoded == n
    return root, embedder.name


def test_shipped_texts_cover_the_default_taxonomy_and_the_examples(snap: Snapshot) -> None:
    texts, sources = shipped_texts()
    assert sources["taxonomy_nodes"] == len(snap.active_leaf_ids) > 8_000
    assert sources["examples"] == len(packaged_examples())
    assert len(texts) == len(set(texts)) <= sources["taxonomy_nodes"] + sources["examples"]


def test_a_fresh_data_dir_does_not_re_embed_the_node_texts(
    installed: tuple[Path, str], snap: Snapshot, tmp_path: Path
) -> None:
    root, name = installed
    inner = CountingEmbedder(name)
    embedder = CachedEmbedder(inner, EmbeddingCache(tmp_path / "fresh"), prebuilt=PrebuiltVectors(root))
    reported: list[tuple[int, int]] = []
    embedder.progress = lambda done, total: reported.append((done, total))
    index = TaxonomyIndex(snap, embedder)
    build_index(embedder, packaged_examples())
    assert inner.encoded == 0 and reported == []  # nothing computed, nothing to report
    assert embedder.prebuilt_hits >= len(index) and embedder.misses == 0
    # the vectors are the embedder's own
    assert np.array_equal(index.vectors[:50], CountingEmbedder(name).encode([node_text(snap, i) for i in index.ids[:50]]))


def test_only_texts_missing_from_the_set_are_encoded(installed: tuple[Path, str], tmp_path: Path) -> None:
    root, name = installed
    inner = CountingEmbedder(name)
    embedder = CachedEmbedder(inner, EmbeddingCache(tmp_path / "c"), prebuilt=PrebuiltVectors(root))
    known = packaged_examples()[0].text(DEFAULT_MAX_CHARS)
    reported: list[tuple[int, int]] = []
    embedder.progress = lambda done, total: reported.append((done, total))
    out = embedder.encode([known, "a node added by an edit", known])
    assert inner.encoded == 1 and reported == [(1, 1)]
    assert np.array_equal(out[0], out[2]) and np.array_equal(out, CountingEmbedder(name).encode(
        [known, "a node added by an edit", known]))


def _copy_set(installed: tuple[Path, str], tmp_path: Path) -> tuple[Path, Path]:
    root, name = installed
    copy = tmp_path / "prebuilt"
    src, dst = set_dir(root, name), set_dir(copy, name)
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return copy, dst


def test_a_corrupted_set_is_recomputed(
    installed: tuple[Path, str], snap: Snapshot, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, name = installed
    copy, directory = _copy_set(installed, tmp_path)
    damaged = bytearray((directory / "vectors.npy").read_bytes())
    damaged[-3] ^= 0xFF  # one flipped byte in the last vector: the checksum no longer matches
    (directory / "vectors.npy").write_bytes(bytes(damaged))
    inner = CountingEmbedder(name)
    embedder = CachedEmbedder(inner, EmbeddingCache(tmp_path / "fresh"), prebuilt=PrebuiltVectors(copy))
    reported: list[tuple[int, int]] = []
    embedder.progress = lambda done, total: reported.append((done, total))
    with caplog.at_level(logging.WARNING, logger="retrieval.prebuilt"):
        index = TaxonomyIndex(snap, embedder)
    assert "does not match its checksum" in caplog.text
    assert inner.encoded == len(index) and embedder.prebuilt_hits == 0
    assert reported[-1] == (len(index), len(index)) and len(reported) > 1  # chunked, with progress
    fresh = CountingEmbedder(name).encode([node_text(snap, i) for i in index.ids])
    assert np.array_equal(index.vectors, fresh)  # the computed vectors, not the damaged ones


@pytest.mark.parametrize("damage", ["other-embedder", "other-dim", "bad-manifest", "short-keys"])
def test_a_set_that_does_not_fit_is_ignored(installed: tuple[Path, str], tmp_path: Path, damage: str) -> None:
    _, name = installed
    copy, directory = _copy_set(installed, tmp_path)
    manifest = json.loads((directory / MANIFEST).read_text())
    dim = 8
    if damage == "other-embedder":  # a set of another embedder, moved under this name
        manifest["embedder"] = "another-model@123+seq128"
    elif damage == "other-dim":
        dim = 16
    elif damage == "bad-manifest":
        (directory / MANIFEST).write_text("{not json")
    elif damage == "short-keys":  # arrays that disagree with the manifest (checksums updated)
        keys = np.load(directory / "keys.npy")[:-1]
        np.save(directory / "keys.npy", keys)
        manifest["sha256"]["keys.npy"] = hashlib.sha256((directory / "keys.npy").read_bytes()).hexdigest()
    if damage != "bad-manifest":
        (directory / MANIFEST).write_text(json.dumps(manifest))
    text = packaged_examples()[0].text(DEFAULT_MAX_CHARS)
    assert PrebuiltVectors(copy).get_many(name, [text], dim) == [None]
    assert PrebuiltVectors(installed[0]).get_many(name, [text], 8)[0] is not None  # the intact set serves it


def test_another_embedder_finds_no_set(installed: tuple[Path, str]) -> None:
    root, _ = installed
    text = packaged_examples()[0].text(DEFAULT_MAX_CHARS)
    assert PrebuiltVectors(root).get_many("all-MiniLM-L6-v2@0000000000+seq128", [text], 8) == [None]


def test_rebuilding_an_intact_set_is_a_no_op(installed: tuple[Path, str]) -> None:
    root, name = installed
    again = CountingEmbedder(name)
    _, _, computed = build(again, root)
    assert not computed and again.encoded == 0


def test_a_new_taxonomy_file_with_the_same_node_texts_only_updates_the_provenance(
    tmp_path: Path, snap: Snapshot
) -> None:
    """A set written for the categories-only default (the texts are per node: the attributes
    merged in since change none) is kept, vectors untouched; its manifest names the new file."""
    embedder = CountingEmbedder()
    directory, _, _ = build(embedder, tmp_path)
    manifest_path = directory / MANIFEST
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    vectors = (directory / "vectors.npy").read_bytes()
    old_sources = {**manifest["sources"], "taxonomy_file": "shopify_categories_2024-07.json.gz",
                   "taxonomy_sha256": "0" * 64}
    manifest_path.write_text(json.dumps({**manifest, "sources": old_sources}), encoding="utf-8")
    _, _, computed = build(CountingEmbedder(embedder.name), tmp_path)
    assert not computed and (directory / "vectors.npy").read_bytes() == vectors
    assert json.loads(manifest_path.read_text(encoding="utf-8")) == manifest
    assert manifest["sources"]["taxonomy_file"] == "shopify_2024-07_with_attributes.json.gz"
    assert manifest["sources"]["taxonomy_nodes"] == len(snap.active_leaf_ids)


def test_first_start_with_the_installed_set_embeds_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """build_runtime on an empty data directory, as `tagsmith tag` runs it: the store is
    seeded and the classifier trained (both reported), no text is embedded; a second start
    on the same data directory has nothing to report."""
    import serve.runtime as runtime_module
    from serve.settings import Settings

    inner = CountingEmbedder()
    build(CountingEmbedder(inner.name), tmp_path / "prebuilt")
    monkeypatch.setattr(runtime_module, "inner_embedder_from_settings", lambda s: inner)
    monkeypatch.setenv("TAGSMITH_PREBUILT_DIR", str(tmp_path / "prebuilt"))
    recorder = Recorder()
    runtime = runtime_module.build_runtime(Settings(), progress=recorder)
    runtime.close()
    assert inner.encoded == 0 and recorder.counts == []
    # (no tag of the shipped examples has the 3 examples a lexical class needs: no training)
    assert recorder.steps == [
        "importing the packaged taxonomy into the store (first start)", "done",
        "importing the packaged Shopify → Google crosswalk (first start)", "done",
    ]
    from taxonomy import TaxonomyStore
    from taxonomy.crosswalk_catalog import CrosswalkCatalog

    settings = Settings()
    with TaxonomyStore(settings.taxonomy_db_url) as store, CrosswalkCatalog(settings.data_dir, store) as catalog:
        assert "google" in catalog.names()  # ?crosswalk=google works out of the box
        _, counterpart = catalog.counterpart("google", "gid://shopify/TaxonomyCategory/aa-1-12-4")  # Jeans
        assert counterpart.status == "mapped" and counterpart.target_ids
    again = Recorder()
    runtime_module.build_runtime(Settings(), progress=again).close()
    assert again.steps == [] and again.counts == [] and inner.encoded == 0


def test_first_start_without_a_set_reports_the_embedding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import serve.runtime as runtime_module
    from serve.settings import Settings

    inner = CountingEmbedder()
    monkeypatch.setattr(runtime_module, "inner_embedder_from_settings", lambda s: inner)
    monkeypatch.setenv("TAGSMITH_PREBUILT_DIR", str(tmp_path / "nothing-installed"))
    recorder = Recorder()
    runtime_module.build_runtime(Settings(), progress=recorder).close()
    n_nodes = len(load_default_taxonomy().active_leaf_ids)
    assert inner.encoded == n_nodes + len(packaged_examples())
    step = f"embedding the taxonomy's node texts for search ({n_nodes:,} not cached yet)"
    assert recorder.steps[recorder.steps.index(step) + 1] == "done"
    assert recorder.counts[-1] == (n_nodes, n_nodes)
