"""A real, throw-away PostgreSQL server for the ``postgres`` test tier.

Debian's server binaries (``scripts/install-postgres.sh``), a cluster made by ``initdb`` in a
temporary directory, run as an unprivileged user (the server refuses root: under root the
cluster belongs to ``nobody``), listening on a free loopback port only (its Unix socket in
the cluster's directory), password authentication over TCP. Stopped (fast, then killed) and
removed when the session ends, whatever happened. Durability settings are off unless asked
for: the cluster dies with the session, and most tests are about behaviour, not fsync.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
USER = "tagsmith"


def postgres_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` with ``pg_ctl`` (Debian's layout)."""
    candidates = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "pg_ctl").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return candidates[-1] if candidates else None


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    ctl: Callable[..., subprocess.CompletedProcess[str]] = field(repr=False, compare=False)
    data: Path = field(repr=False, compare=False, default=Path())

    def kill(self) -> None:
        """SIGKILL the postmaster and every process of this cluster at once (no shutdown at all:
        no checkpoint, clients cut off, crash recovery at the next start), then wait until
        they are all gone. The processes are found from the postmaster's pid (postmaster.pid)
        and its children in /proc, since pg_ctl puts the postmaster in a session of its own.

        The postmaster is an orphan (pg_ctl has exited), and where process 1 does not reap
        orphans (containers, micro-VMs) the killed processes stay zombies: the next start's
        ``kill(pid, 0)`` on the pid in ``postmaster.pid`` would take the zombie for a running
        postmaster and refuse. So once all are dead the stale lock files (``postmaster.pid``,
        the Unix socket's ``.lock``) are removed, which is the state a reaped crash leaves in
        effect (their pid no longer exists)."""
        pids = cluster_pids(self.data)
        assert pids, f"no running PostgreSQL for {self.data}"
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(_alive(pid) for pid in pids):
            assert time.monotonic() < deadline, f"PostgreSQL processes {pids} survived SIGKILL"
            time.sleep(0.05)
        (self.data / "postmaster.pid").unlink(missing_ok=True)
        (self.data.parent / f".s.PGSQL.{self.port}.lock").unlink(missing_ok=True)  # the socket's, beside it

    def start(self) -> None:
        """Start it again on the same port."""
        done = self.ctl("start", "-w", "-t", str(START_TIMEOUT_S), timeout=START_TIMEOUT_S + 10)
        assert done.returncode == 0, done.stderr

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        """The libpq connection string (psycopg directly)."""
        return f"host={self.host} port={self.port} user={self.user} password={self.password} dbname={database}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> tuple[int, int] | None:
    """The uid/gid the server runs as: ``nobody`` under root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


@contextlib.contextmanager
def postgres_server(*, durable: bool = False) -> Iterator[PostgresServer]:
    """``durable``: PostgreSQL's default fsync / synchronous_commit (a commit survives the
    server being killed); otherwise both off, for speed (see the module's docstring)."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL server: run scripts/install-postgres.sh (Debian's postgresql)")
    owner = _run_as()
    root = Path(tempfile.mkdtemp(prefix="tagsmith-pg-"))
    data, pwfile = root / "data", root / "pwfile"
    password = secrets.token_urlsafe(16)
    pwfile.write_text(password + "\n")
    if owner is not None:
        for path in (root, pwfile):
            os.chown(path, *owner)
    as_owner: dict[str, object] = {} if owner is None else {"user": owner[0], "group": owner[1], "extra_groups": []}
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(root)}

    def run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            [str(bin_dir / args[0]), *args[1:]], env=env, cwd=root, capture_output=True, text=True,
            timeout=timeout, check=False, **as_owner,
        )

    try:
        made = run("initdb", "-D", str(data), "-U", USER, f"--pwfile={pwfile}", "--auth-host=scram-sha-256",
                   "--auth-local=trust", "-E", "UTF8", "--no-sync", timeout=120)
        if made.returncode != 0:
            raise RuntimeError(f"initdb failed: {made.stdout[-2000:]}{made.stderr[-2000:]}")
        port = _free_port()
        options = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} "
                   "-c max_connections=200")
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"

        def ctl(command: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
            extra = ("-l", str(root / "server.log"), "-o", options) if command == "start" else ()
            return run("pg_ctl", command, "-D", str(data), *args, *extra, timeout=timeout)

        started = ctl("start", "-w", "-t", str(START_TIMEOUT_S), timeout=START_TIMEOUT_S + 10)
        if started.returncode != 0:
            log = (root / "server.log").read_text(errors="replace")[-3000:] if (root / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {started.stdout}{started.stderr}\n{log}")
        yield PostgresServer("127.0.0.1", port, USER, password, ctl, data)
    finally:
        _stop(run, data)
        shutil.rmtree(root, ignore_errors=True)


def cluster_pids(data: Path) -> list[int]:
    """The postmaster of the cluster in ``data`` (from ``postmaster.pid``) and its children:
    the postgres processes of that cluster (checkpointer, WAL writer, backends ...)."""
    try:
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    if not _alive(postmaster):
        return []
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # the fields after the command's closing parenthesis: state, ppid, ...
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            children.append(int(entry.name))
    return [postmaster, *children]


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: it is dead, waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _stop(run: Callable[..., subprocess.CompletedProcess[str]], data: Path) -> None:
    """``pg_ctl stop -m fast``; if the server is still there, SIGKILL its postmaster."""
    pidfile = data / "postmaster.pid"
    if not pidfile.exists():
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        run("pg_ctl", "stop", "-w", "-m", "fast", "-t", str(STOP_TIMEOUT_S), "-D", str(data),
            timeout=STOP_TIMEOUT_S + 10)
    if pidfile.exists():
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
            time.sleep(0.5)
