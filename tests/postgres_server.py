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

    def kill(self) -> None:
        """Stop the server abruptly (``pg_ctl stop -m immediate``: no shutdown checkpoint,
        clients cut off, crash recovery at the next start)."""
        done = self.ctl("stop", "-w", "-m", "immediate", "-t", str(STOP_TIMEOUT_S), timeout=STOP_TIMEOUT_S + 10)
        assert done.returncode == 0, done.stderr

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
        yield PostgresServer("127.0.0.1", port, USER, password, ctl)
    finally:
        _stop(run, data)
        shutil.rmtree(root, ignore_errors=True)


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
