"""Publishing an example index as immutable *generations*, switched atomically.

Where generations live is a :class:`~retrieval.generations.GenerationBackend`: a directory
(:class:`FileGenerations`, the default, below) or a database shared by every replica
(:class:`retrieval.generations_db.DatabaseGenerations`, when ``database.url`` is set). This
module does what does not depend on where: numbering, the manifest, checksums, verification.

Layout of a directory ``root``::

    CURRENT                  "gen-000007 <sha256 of its manifest.json>\\n"
    gen-000006/              the previous generation (kept for rollback / slow readers)
    gen-000007/manifest.json embedder, dimension, taxonomy version, counts, file checksums
    gen-000007/index.faiss, ids.json, examples.jsonl
    gen-000007/lexical*.{json,npy,npz}   the lexical classifier trained on those examples (optional)

A publication writes ``.staging-*/`` completely, fsyncs every file, renames it to
``gen-N/`` and fsyncs the root, then replaces ``CURRENT`` atomically. ``CURRENT`` is the
commit point: a crash at any earlier moment leaves the previous generation in use (and an
orphan that the next publication garbage-collects). A reader verifies the manifest hash
recorded in ``CURRENT`` and every file's sha256 before deserialising anything, and refuses
a generation built with another embedder or dimension.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from retrieval.calibration import Calibration, calibration_of
from retrieval.durable import atomic_write_text, fsync_dir, write_bytes_durable
from retrieval.errors import (
    IndexCorruptError,
    IndexMismatchError,
    NoIndexError,
    StaleGenerationError,
)
from retrieval.generations import ANY, MANIFEST, AnyBase, GenerationBackend, generation_name
from retrieval.index import ExampleIndex
from retrieval.lexical import FILES as LEXICAL_FILES
from retrieval.lexical import LexicalClassifier

FORMAT = "tagsmith-example-index"
FORMAT_VERSION = 1
CURRENT = "CURRENT"
_GEN = re.compile(r"^gen-(\d{6,})$")


@dataclass(frozen=True)
class Manifest:
    generation: str
    embedder: str
    dim: int
    kind: str
    taxonomy_version: int | None
    count: int
    tag_count: int
    files: Mapping[str, Mapping[str, Any]]  # name -> {"sha256": hex, "bytes": n}
    created_at: float
    extra: Mapping[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=1, sort_keys=True) + "\n"

    @property
    def calibration(self) -> Calibration | None:
        """The calibration fitted for this generation (None: published without one)."""
        return calibration_of(self.extra)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FileGenerations:
    """Generations as directories under ``root`` (the layout in the module's docstring);
    one publisher at a time per root (an flock), readers never lock: they follow CURRENT."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return str(self.root)

    def close(self) -> None:
        pass

    def current(self) -> tuple[str, str] | None:
        try:
            text = (self.root / CURRENT).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        parts = text.split()
        if len(parts) != 2 or not _GEN.match(parts[0]) or len(parts[1]) != 64:
            raise IndexCorruptError(f"{self.root / CURRENT} is damaged: {text[:80]!r}")
        return parts[0], parts[1]

    def read(self, generation: str, name: str) -> bytes:
        return (self.root / generation / name).read_bytes()

    def generations(self) -> list[str]:
        if not self.root.is_dir():
            return []
        names = [p.name for p in self.root.iterdir() if _GEN.match(p.name) and p.is_dir()]
        return sorted(names, key=lambda n: int(n[4:]))

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def publish(
        self, build: Callable[[str], Mapping[str, bytes]], *, base: str | AnyBase | None = ANY, keep: int = 2
    ) -> str:
        with self._lock():
            previous = self.current()
            if base is not ANY and (previous[0] if previous else None) != base:
                raise StaleGenerationError(f"{self.root}: {previous[0] if previous else None} is current, not {base}")
            existing = self.generations()
            generation = generation_name(int(existing[-1][4:]) + 1 if existing else 1)
            files = build(generation)
            staging = self.root / f".staging-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            staging.mkdir()
            try:
                for name, data in files.items():
                    write_bytes_durable(staging / name, data)
                fsync_dir(staging)
                os.rename(staging, self.root / generation)
                fsync_dir(self.root)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            # the commit point: before this line readers see the previous generation
            atomic_write_text(self.root / CURRENT, f"{generation} {_sha256(files[MANIFEST])}\n")
            self._gc(generation, previous[0] if previous else None, keep)
        return generation

    def _gc(self, current: str, previous: str | None, keep: int) -> None:
        """Keep the current and the previous generation (then the newest, up to ``keep``);
        drop the rest, orphans of crashed publications included. Readers hold the
        generation they loaded in memory, so deleting it under them is safe."""
        protected = [g for g in (current, previous) if g is not None]
        others = [g for g in self.generations() if g not in protected]
        room = max(keep - len(protected), 0)
        doomed = others[: len(others) - room] if room else others
        for name in doomed:
            shutil.rmtree(self.root / name, ignore_errors=True)
        for path in self.root.glob(".staging-*"):
            shutil.rmtree(path, ignore_errors=True)


class IndexStore:
    """Generations of one example index: under a directory ``root`` (e.g.
    ``<data_dir>/index``), or in ``backend`` (e.g. the shared database)."""

    def __init__(self, root: str | Path | None = None, *, keep: int = 2, backend: GenerationBackend | None = None) -> None:
        if keep < 1:
            raise ValueError("keep must be >= 1")
        if (root is None) == (backend is None):
            raise ValueError("give either a root directory or a backend")
        self.backend: GenerationBackend = backend if backend is not None else FileGenerations(root)  # type: ignore[arg-type]
        self.keep = keep

    def close(self) -> None:
        self.backend.close()

    @property
    def where(self) -> str:
        """Where the generations live, for messages."""
        return self.backend.describe()

    # ---- reading ------------------------------------------------------------------------
    def current(self) -> tuple[str, str] | None:
        """(generation name, manifest sha256) of the current generation."""
        return self.backend.current()

    def manifest(self) -> Manifest:
        """The verified manifest of the current generation (no index files read)."""
        pointer = self.current()
        if pointer is None:
            raise NoIndexError(f"no index has been published in {self.where}")
        return self._read_manifest(*pointer)

    def _read(self, generation: str, name: str) -> bytes:
        try:
            return self.backend.read(generation, name)
        except FileNotFoundError as exc:
            raise IndexCorruptError(f"{self.where}: {generation}/{name} is missing") from exc

    def _read_manifest(self, generation: str, expected_sha: str) -> Manifest:
        raw = self._read(generation, MANIFEST)
        where = f"{self.where}: {generation}/{MANIFEST}"
        if _sha256(raw) != expected_sha:
            raise IndexCorruptError(f"{where} does not match the checksum recorded as current")
        try:
            data = json.loads(raw)
            manifest = Manifest(**data)
        except (ValueError, TypeError) as exc:
            raise IndexCorruptError(f"{where} is not a valid manifest: {exc}") from exc
        if manifest.format != FORMAT or manifest.format_version != FORMAT_VERSION:
            raise IndexMismatchError(
                f"{where}: format {manifest.format} v{manifest.format_version}, "
                f"this tagsmith reads {FORMAT} v{FORMAT_VERSION}: rebuild the index"
            )
        return manifest

    def load(self, *, embedder: str, dim: int) -> tuple[ExampleIndex, Manifest]:
        """The current generation's index, verified (see :meth:`load_bundle`)."""
        index, _, manifest = self.load_bundle(embedder=embedder, dim=dim)
        return index, manifest

    def load_bundle(
        self, *, embedder: str, dim: int
    ) -> tuple[ExampleIndex, LexicalClassifier | None, Manifest]:
        """The current generation, verified, for queries embedded by ``embedder``: the
        index and, when one was published with it, the lexical classifier.

        Raises :class:`NoIndexError` when nothing was published, :class:`IndexMismatchError`
        when it was built with another embedder or dimension, :class:`IndexCorruptError`
        when a file is missing, truncated or altered.
        """
        for attempt in range(3):
            pointer = self.current()
            try:
                return self._load(embedder=embedder, dim=dim)
            except IndexCorruptError:
                # a publisher may have switched CURRENT and collected the generation we were
                # reading: that is not damage, so read the new one; a real fault repeats
                if attempt == 2 or self.current() == pointer:
                    raise
        raise AssertionError("unreachable")

    def verified_files(self) -> tuple[dict[str, bytes], Manifest]:
        """The current generation's files (manifest excluded), each checked against the
        manifest, and the manifest."""
        manifest = self.manifest()
        files: dict[str, bytes] = {}
        for name, info in manifest.files.items():
            data = self._read(manifest.generation, name)
            if len(data) != info["bytes"] or _sha256(data) != info["sha256"]:
                raise IndexCorruptError(
                    f"{self.where}: {manifest.generation}/{name} is corrupted ({len(data)} bytes, expected "
                    f"{info['bytes']}; checksum mismatch): restore it or rebuild the index"
                )
            files[name] = data
        return files, manifest

    def _load(
        self, *, embedder: str, dim: int
    ) -> tuple[ExampleIndex, LexicalClassifier | None, Manifest]:
        manifest = self.manifest()
        if manifest.embedder != embedder or manifest.dim != dim:
            raise IndexMismatchError(
                f"the index in {self.where} ({manifest.generation}) was built with embedder "
                f"{manifest.embedder!r} (dim {manifest.dim}), not {embedder!r} (dim {dim}): "
                "rebuild it with `tagsmith index build`"
            )
        files, verified = self.verified_files()
        if verified.generation != manifest.generation:
            raise IndexCorruptError(f"{self.where}: {manifest.generation} was replaced while being read")
        index = ExampleIndex.from_files(files)
        if len(index) != manifest.count or index.dim != manifest.dim:
            raise IndexCorruptError(f"{manifest.generation}: contents disagree with the manifest")
        lexical = None
        if all(name in files for name in LEXICAL_FILES):
            try:
                lexical = LexicalClassifier.from_files(files)
            except (KeyError, ValueError, TypeError) as exc:
                raise IndexCorruptError(f"{manifest.generation}: lexical classifier unreadable: {exc}") from exc
        return index, lexical, manifest

    def generations(self) -> list[str]:
        return self.backend.generations()

    # ---- writing ------------------------------------------------------------------------
    def publish(
        self,
        index: ExampleIndex,
        *,
        embedder: str,
        taxonomy_version: int | None = None,
        extra: Mapping[str, Any] | None = None,
        lexical: LexicalClassifier | None = None,
        calibration: Calibration | None = None,
        base: str | AnyBase | None = ANY,
    ) -> Manifest:
        """Write ``index`` (and ``lexical``, trained on its examples) as a new generation
        and make it current; returns its manifest. ``calibration`` (fitted on this index,
        :func:`retrieval.publish.publish_index`) is stored in the manifest's ``extra``,
        covered by the manifest checksum; a calibration in ``extra`` is never carried over
        from another generation. ``base``: the generation ``index`` was derived from; when
        given and another one is current (published meanwhile, by another process or
        replica), nothing is written: :class:`StaleGenerationError`."""
        files = index.to_files()
        extra = dict(extra or {})
        extra.pop("calibration", None)
        if calibration is not None:
            extra["calibration"] = calibration.to_dict()
        if lexical is not None:
            files.update(lexical.to_files())
            extra["lexical"] = {"classes": len(lexical.classes), "examples": lexical.n_examples}
        tags = {t for ex in index for t in ex.tags}
        manifest: Manifest | None = None

        def build(generation: str) -> dict[str, bytes]:
            nonlocal manifest
            manifest = Manifest(
                generation=generation, embedder=embedder, dim=index.dim, kind=index.kind,
                taxonomy_version=taxonomy_version, count=len(index), tag_count=len(tags),
                files={n: {"sha256": _sha256(d), "bytes": len(d)} for n, d in files.items()},
                created_at=time.time(), extra=extra,
            )
            return {**files, MANIFEST: manifest.to_json().encode("utf-8")}

        self.backend.publish(build, base=base, keep=self.keep)
        assert manifest is not None
        return manifest

    def copy_from(self, other: IndexStore) -> Manifest:
        """Publish ``other``'s current generation here, verified, as it is (calibration and
        lexical classifier included): moving a data directory's index into the database."""
        files, source = other.verified_files()
        return publish_copy(lambda build: self.backend.publish(build, keep=self.keep), files, source)


def publish_copy(
    publish: Callable[[Callable[[str], Mapping[str, bytes]]], object], files: Mapping[str, bytes], source: Manifest,
) -> Manifest:
    """A generation's verified ``files`` (:meth:`IndexStore.verified_files`) published elsewhere
    by ``publish`` (given the build function a backend's publish takes): the same files under
    a manifest renamed to the new generation and re-dated; that manifest."""
    copied = source

    def build(generation: str) -> dict[str, bytes]:
        nonlocal copied
        copied = replace(source, generation=generation, created_at=time.time())
        return {**files, MANIFEST: copied.to_json().encode("utf-8")}

    publish(build)
    return copied


def stats(manifest: Manifest) -> dict[str, Any]:
    """A flat summary for the CLI and the service."""
    out = {k: v for k, v in asdict(manifest).items() if k not in {"files", "extra"}}
    out["bytes"] = sum(int(f["bytes"]) for f in manifest.files.values())
    calibration = manifest.calibration
    out["calibration"] = calibration.summary() if calibration is not None else None
    return out
