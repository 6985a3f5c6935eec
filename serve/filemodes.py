"""Owner-only modes for the service's state: the data directory 0700, its databases 0600.

The data directory holds the API keys' hashes, reviewers' feedback and customers' job
inputs: nothing there is for other local users. The process umask (often 022) would make
them world-readable, so modes are set explicitly instead of trusting it.

An existing data directory or database with looser modes is *tightened* (and logged), not
merely warned about: a warning in a service log is easily missed, the directory is the
service's own ("one directory for all state"), and an operator who wants to share a
file can still copy it out. Files owned by another user are left alone (a warning): we
cannot chmod them, and failing the start over it would be worse.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("tagsmith.service")

DIR_MODE = 0o700
FILE_MODE = 0o600
#: the files SQLite keeps next to a database in WAL mode (it gives them the database's mode
#: when it creates them, but ones left by an older version keep theirs)
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


def _tighten(path: Path, mode: int, fd: int | None = None) -> None:
    current = stat.S_IMODE(os.fstat(fd).st_mode if fd is not None else path.stat().st_mode)
    if current & 0o077 == 0:
        return
    try:
        if fd is not None:
            os.fchmod(fd, mode)
        else:
            path.chmod(mode)
    except PermissionError:
        log.warning("%s is readable by others (mode %o) and not ours to change: chmod %o it", path, current, mode)
        return
    log.warning("%s was readable by others (mode %o): tightened to %o", path, current, mode)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) with mode 0700, or tighten an existing one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=DIR_MODE)
        path.chmod(DIR_MODE)  # mkdir's mode is filtered by the umask: say it exactly
    except FileExistsError:
        _tighten(path, DIR_MODE)
    return path


def private_data_dir(data_dir: Path) -> Path:
    """The data directory 0700 and its taxonomy database 0600, before anything opens them
    (the taxonomy store, in taxonomy/, knows nothing of file modes): for the service and
    every CLI command that creates state."""
    private_dir(data_dir)
    private_file(data_dir / "taxonomy.db")
    return data_dir


def private_file(path: Path) -> Path:
    """Make sure ``path`` exists with mode 0600 *before* a library (SQLite) opens it.

    Created empty when missing (an empty file is a valid, empty SQLite database), never
    truncated; an existing file and its SQLite sidecars with looser modes are tightened."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # an existing file is never opened here: closing any descriptor of a database file drops
    # every POSIX lock this process holds on it, SQLite's included (another store of this
    # process may have it open: one database.url for all stores); a process whose WAL
    # connections lost their locks has its WAL deleted under it by the next process that
    # closes its last connection ("disk I/O error")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        _tighten(path, FILE_MODE)
    else:
        try:
            _tighten(path, FILE_MODE, fd)  # a umask cannot loosen 0600, but say it exactly
        finally:
            os.close(fd)
    for suffix in SQLITE_SIDECARS:
        sidecar = path.with_name(path.name + suffix)
        if sidecar.exists():
            _tighten(sidecar, FILE_MODE)
    return path


def private_db_file(path: Path) -> Path:
    """A database file below the data directory (``taxonomies/google.db``): its directory
    0700, the file 0600 (:func:`private_file`)."""
    private_dir(path.parent)
    return private_file(path)
