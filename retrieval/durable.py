"""Durable file I/O: the one place where tagsmith writes files that must survive a crash.

Two mechanisms, for two kinds of file:

- **Whole files replaced atomically** (:func:`atomic_write_bytes`, :func:`atomic_write_text`,
  :func:`atomic_write_json`, :func:`atomic_path`): the content goes to a temporary sibling,
  which is fsynced, then ``os.replace``-d over the target, then the directory is fsynced.
  ``os.replace`` is atomic on POSIX within one file system, so a reader sees the old content
  or the new one, never a prefix, even after SIGKILL or power loss; fsyncing the file
  *before* the rename keeps a crash from exposing a renamed but empty file, and fsyncing the
  directory *after* it makes the rename itself durable. Every temporary name is unique
  (pid + random suffix): two writers of one target never share, and truncate, one
  temporary file; the last rename wins and each rename installs one writer's whole content.
- **Append-only JSONL** (:func:`append_lines`, :func:`complete_lines`, :func:`resume_keys`):
  results files written batch by batch (``tag-file``, the eval runner, the jobs worker).
  Each batch is appended as complete lines and fsynced before the call returns, so a crash
  loses at most the batch being written and leaves at most one torn last line. Before
  resuming, the single writer reads the file with :func:`complete_lines` (or
  :func:`resume_keys`), which cuts that torn line off durably: a line is either complete or
  gone, so a re-run redoes the lost batch and every key appears exactly once.

:func:`write_bytes_durable` and :func:`fsync_dir` are the building blocks, public for
writers that stage a whole directory and rename it (``retrieval.store``).

Standard library only; the lowest layer that ``agent``, ``serve`` and ``evals`` share.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "append_lines",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "complete_lines",
    "cut_torn_tail",
    "fsync_dir",
    "iter_complete_lines",
    "iter_resume_keys",
    "resume_keys",
    "sha256_file",
    "write_bytes_durable",
]


# ---- building blocks --------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file, read in 1 MiB blocks (checksums of what was written)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    """Persist a directory's entries (a rename, a create, an unlink), not only file data:
    without it a power loss can undo a rename whose file content was already on disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    # fsync flushes the inode whichever descriptor asks, so a read-only one suffices for a
    # file that a library (torch.save, a streamed writer) wrote and closed
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_durable(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and fsync it, with no rename: for files inside a staging
    directory that is itself renamed into place (then :func:`fsync_dir` it)."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


# ---- whole files, replaced atomically ---------------------------------------------------
def _temp_sibling(path: Path) -> Path:
    # unique per writer: two processes (or threads) writing the same target must never
    # share one temporary file, or one would truncate the other's half-written content;
    # a sibling because os.replace is atomic only within one file system
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a fresh temporary sibling of ``path`` to write (by any means: ``open``,
    ``torch.save``...); when the block ends normally the file is fsynced, renamed over
    ``path`` and the directory fsynced. If the block raises, the temporary file is removed
    and ``path`` keeps its previous content. Creates the parent directory if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically and durably."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any, *, ensure_ascii: bool = True) -> None:
    """Replace ``path`` with ``data`` as indented, key-sorted JSON plus a newline (stable
    bytes for equal data, readable diffs), atomically and durably."""
    text = json.dumps(data, indent=1, sort_keys=True, ensure_ascii=ensure_ascii) + "\n"
    atomic_write_text(path, text)


# ---- append-only JSONL ------------------------------------------------------------------
def append_lines(path: Path, lines: Iterable[str]) -> None:
    """Append complete lines (each ending in ``"\\n"``) as UTF-8 and fsync before returning;
    the directory too when this call creates the file. Nothing is written when ``lines`` is
    empty. A line without its newline is refused (ValueError, nothing written): it would
    read as a torn line and be cut off by the next :func:`complete_lines`.

    The file must end with a newline (or be empty): run :func:`complete_lines` once before
    the first append of a resumed run. One writer at a time."""
    batch = list(lines)
    if not batch:
        return
    for line in batch:
        if not line.endswith("\n"):
            raise ValueError(f"append_lines: a line must end with a newline: {line[:80]!r}")
    created = not path.exists()
    with path.open("ab") as fh:
        fh.write("".join(batch).encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())
    if created:
        fsync_dir(path.parent)


def cut_torn_tail(path: Path) -> None:
    """Cut a torn last line (bytes after the last newline) off ``path`` durably (truncate +
    fsync), reading only the file's tail. A missing file is left missing."""
    if not path.exists():
        return
    with path.open("r+b") as fh:
        size = fh.seek(0, os.SEEK_END)
        end, block = size, 1 << 16
        while end > 0:  # back from the end, a block at a time, to the last newline
            start = max(0, end - block)
            fh.seek(start)
            at = fh.read(end - start).rfind(b"\n")
            if at >= 0:
                end = start + at + 1
                break
            end = start
        if end < size:
            fh.truncate(end)
            fh.flush()
            os.fsync(fh.fileno())


def iter_complete_lines(path: Path) -> Iterator[bytes]:
    """:func:`complete_lines`, streamed: the torn last line is cut off first (before the
    first line is yielded), then the file is read a line at a time, whatever its size."""
    if not path.exists():
        return
    cut_torn_tail(path)
    with path.open("rb") as fh:
        for raw in fh:
            line = raw.rstrip(b"\r\n")
            if line.strip():
                yield line


def complete_lines(path: Path) -> list[bytes]:
    """The complete, non-blank lines of ``path`` (without their newlines), after cutting a
    torn last line off the file durably (truncate + fsync). A missing file is ``[]`` and is
    not created. One writer at a time: the caller is the one that appends next."""
    return list(iter_complete_lines(path))


def iter_resume_keys(path: Path, key: str = "id") -> Iterator[str]:
    """:func:`resume_keys`, streamed (a results file of millions of lines is never held)."""
    for line in iter_complete_lines(path):
        yield str(json.loads(line)[key])


def resume_keys(path: Path, key: str = "id") -> list[str]:
    """``str(record[key])`` of every complete JSON line of ``path``, in file order, after
    :func:`complete_lines` has cut a torn last line off: the keys a resumed run skips.
    Raises ValueError on a complete line that is not JSON, KeyError when one lacks ``key``."""
    return list(iter_resume_keys(path, key))
