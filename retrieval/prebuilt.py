"""Embeddings of the shipped texts, computed once at install time.

A first start on an empty data directory needs the vectors of the texts of the default
taxonomy's 8,251 leaves (of 10,281 nodes; taxonomy search) and of the ~160 packaged example products (the example
index): minutes of embedding on a small CPU. ``scripts/install.sh`` runs
``tagsmith index prebuild`` once (:func:`build`), which writes them into the environment
(``<sys.prefix>/share/tagsmith/embeddings``, or ``$TAGSMITH_PREBUILT_DIR``), and
:class:`~retrieval.cache.CachedEmbedder` reads them before it encodes anything.

One *vector set* per embedder, in a directory named after the embedder's name
(``sha256(name)[:16]``):

- ``vectors.npy``: float32, ``(n, dim)``, exactly what the embedder returned;
- ``keys.npy``: ``(n, 32)`` uint8, :func:`~retrieval.cache.content_key` of each row's text
  (the key of the embedding cache), so a lookup is per text: after a taxonomy edit the
  unchanged nodes are still served from here and only the edited ones are encoded;
- ``manifest.json``: the embedder name, dimension, row count, what the texts came from (the
  taxonomy file's sha256, the content hash of its node texts, the examples' sha256) and the
  sha256 of both ``.npy`` files.

Everything is verified before a vector is used: a set written by another embedder (the
name is part of every key as well), of another dimension, or whose files do not match
their checksums is ignored with a warning, and the vectors are computed instead. Wrong
vectors are never served.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.cache import content_key
from retrieval.durable import sha256_file
from retrieval.embedder import Embedder, Vectors

log = logging.getLogger(__name__)

FORMAT = "tagsmith-prebuilt-embeddings/1"
ENV_DIR = "TAGSMITH_PREBUILT_DIR"
FILES = ("vectors.npy", "keys.npy")
MANIFEST = "manifest.json"


def default_dir() -> Path:
    """``$TAGSMITH_PREBUILT_DIR``, else ``share/tagsmith/embeddings`` in this environment."""
    override = os.environ.get(ENV_DIR)
    if override:
        return Path(override).expanduser()
    return Path(sys.prefix) / "share" / "tagsmith" / "embeddings"


def set_dir(root: Path, embedder_name: str) -> Path:
    return root / hashlib.sha256(embedder_name.encode("utf-8")).hexdigest()[:16]


class PrebuiltVectors:
    """Read-only, verified lookup of prebuilt vectors; loaded lazily on the first lookup
    (a start whose data-directory cache already has everything never reads it)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = default_dir() if root is None else Path(root)
        self._lock = threading.Lock()
        self._loaded: dict[str, tuple[dict[bytes, int], Vectors] | None] = {}

    def _load(self, name: str, dim: int) -> tuple[dict[bytes, int], Vectors] | None:
        directory = set_dir(self.root, name)
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            return None
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            if manifest.get("format") != FORMAT or manifest.get("embedder") != name:
                log.warning("ignoring prebuilt embeddings in %s: written for embedder %r, not %r",
                            directory, manifest.get("embedder"), name)
                return None
            if int(manifest["dim"]) != dim:
                log.warning("ignoring prebuilt embeddings in %s: dimension %s, not %d",
                            directory, manifest["dim"], dim)
                return None
            for file in FILES:
                if sha256_file(directory / file) != manifest["sha256"][file]:
                    log.warning("ignoring prebuilt embeddings in %s: %s does not match its checksum "
                                "(re-run scripts/install.sh to rebuild it)", directory, file)
                    return None
            vectors = np.load(directory / "vectors.npy", allow_pickle=False)
            keys = np.load(directory / "keys.npy", allow_pickle=False)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring prebuilt embeddings in %s: %s", directory, exc)
            return None
        count = int(manifest["count"])
        if (vectors.dtype != np.float32 or vectors.shape != (count, dim)
                or keys.dtype != np.uint8 or keys.shape != (count, 32)):
            log.warning("ignoring prebuilt embeddings in %s: arrays of shape %s/%s, manifest says %d x %d",
                        directory, vectors.shape, keys.shape, count, dim)
            return None
        rows = {bytes(k): i for i, k in enumerate(keys)}
        return rows, vectors

    def get_many(self, name: str, texts: Sequence[str], dim: int) -> list[Vectors | None]:
        """Each text's prebuilt vector for embedder ``name``, or None."""
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = self._load(name, dim)
            found = self._loaded[name]
        if found is None:
            return [None] * len(texts)
        rows, vectors = found
        out: list[Vectors | None] = []
        for text in texts:
            row = rows.get(content_key(name, text))
            out.append(None if row is None else vectors[row])
        return out


def write_set(
    root: Path, embedder_name: str, texts: Sequence[str], vectors: Vectors, sources: dict[str, Any]
) -> Path:
    """Write (replace) the vector set of ``embedder_name``: files first, the manifest last
    and atomically, so a reader sees the old set, no set, or the complete new one."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(texts):
        raise ValueError(f"{len(texts)} texts but vectors of shape {vectors.shape}")
    directory = set_dir(root, embedder_name)
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path = directory / MANIFEST
    manifest_path.unlink(missing_ok=True)  # no manifest: the set is absent while rewritten
    keys = np.frombuffer(b"".join(content_key(embedder_name, t) for t in texts), dtype=np.uint8)
    arrays: dict[str, np.ndarray] = {"vectors.npy": vectors, "keys.npy": keys.reshape(len(texts), 32)}
    for file, array in arrays.items():
        with (directory / file).open("wb") as fh:
            np.save(fh, array, allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
    manifest = {
        "format": FORMAT,
        "embedder": embedder_name,
        "dim": int(vectors.shape[1]),
        "count": len(texts),
        "sources": sources,
        "sha256": {file: sha256_file(directory / file) for file in FILES},
    }
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, manifest_path)
    return directory


def _record_sources(directory: Path, sources: dict[str, Any]) -> None:
    """Rewrite (atomically) the ``sources`` of a verified set's manifest if they changed."""
    manifest_path = directory / MANIFEST
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("sources") == sources:
        return
    manifest["sources"] = sources
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, manifest_path)


def shipped_texts() -> tuple[list[str], dict[str, Any]]:
    """The texts a first start embeds: the default taxonomy's active leaves (as
    :class:`~retrieval.taxonomy_search.TaxonomyIndex` writes them) and the packaged
    examples (as the index build writes them), deduplicated, with their provenance."""
    from retrieval.examples import packaged_examples, packaged_examples_path
    from retrieval.taxonomy_search import node_text
    from retrieval.text import DEFAULT_MAX_CHARS
    from taxonomy import load_default_taxonomy
    from taxonomy.default import default_taxonomy_path

    snap = load_default_taxonomy()
    nodes = [node_text(snap, i) for i in sorted(snap.active_leaf_ids)]
    examples = [ex.text(DEFAULT_MAX_CHARS) for ex in packaged_examples()]
    texts = list(dict.fromkeys(nodes + examples))
    sources = {
        "taxonomy_file": default_taxonomy_path().name,
        "taxonomy_sha256": sha256_file(default_taxonomy_path()),
        "taxonomy_node_texts_sha256": hashlib.sha256("\x00".join(nodes).encode("utf-8")).hexdigest(),
        "taxonomy_nodes": len(nodes),
        "examples_sha256": sha256_file(packaged_examples_path()),
        "examples": len(examples),
    }
    return texts, sources


def build(
    embedder: Embedder,
    root: Path | None = None,
    *,
    chunk: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Path, int, bool]:
    """Embed :func:`shipped_texts` with ``embedder`` into ``root``; returns (set directory,
    number of texts, whether anything was computed). A verified set that already holds
    every text is kept as is: re-running is cheap."""
    root = default_dir() if root is None else Path(root)
    texts, sources = shipped_texts()
    existing = PrebuiltVectors(root).get_many(embedder.name, texts, embedder.dim)
    if all(v is not None for v in existing):
        # the vectors are looked up per text: a new taxonomy file whose node texts are the
        # same (e.g. attributes added) needs none recomputed, only its provenance recorded
        directory = set_dir(root, embedder.name)
        _record_sources(directory, sources)
        return directory, len(texts), False
    # shortest first: texts of similar length share a chunk and pad little
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    vectors = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    for start in range(0, len(order), chunk):
        rows = order[start : start + chunk]
        vectors[rows] = embedder.encode([texts[i] for i in rows])
        if progress is not None:
            progress(min(start + chunk, len(order)), len(order))
    return write_set(root, embedder.name, texts, vectors, sources), len(texts), True
