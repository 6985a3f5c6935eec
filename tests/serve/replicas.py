"""N real ``tagsmith serve`` replicas on loopback over one database (``database.url``), each
with its own data directory: the harness of the multi-replica tests (postgres tier).

    with replica_set(postgres_url, tmp_path, n=3) as replicas:
        a, b, c = replicas
        httpx.post(f"{a.base}/v1/keys", headers=replicas.admin, ...)
        b.kill()              # SIGKILL (or any signal), no clean-up
        b.start(); b.wait()   # the same data dir, port and database

The shop taxonomy (tests/serve/helpers.py) is imported into the database and its examples
published once (in the database too when index generations live there); every replica's data
directory starts as a copy of that seed. The replicas use the hashing embedder and the ``knn``
pipeline unless ``env`` says otherwise, and are started together and waited for together
(start-up dominates the cost: start a set once per module).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from serve.keys import KeyStore
from tests.conftest import free_port
from tests.serve.helpers import (
    HASHING_ENV,
    auth,
    seed_data_dir,
    server_log,
    start_server,
    stop_server,
    wait_ready,
)


@dataclass
class Replica:
    name: str
    data_dir: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start the process (not waiting for it: :meth:`wait`)."""
        assert not self.running, f"{self.name} is already running"
        self.proc = start_server(self.port, self.env)

    def wait(self, timeout: float = 180.0) -> None:
        """Until ``/readyz`` answers 200 (raises with the server's log otherwise)."""
        assert self.proc is not None, f"{self.name} was not started"
        wait_ready(self.proc, self.base, self.env, timeout=timeout)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` and reap the process (SIGKILL: no shutdown code runs)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def restart(self, timeout: float = 180.0) -> None:
        """SIGKILL (when running), start again, wait until ready."""
        if self.running:
            self.kill()
        self.start()
        self.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None:
            stop_server(self.proc)

    def log(self) -> str:
        return server_log(self.env)


@dataclass
class ReplicaSet:
    replicas: list[Replica]
    database_url: str
    admin_key: str

    @property
    def admin(self) -> dict[str, str]:
        """The Authorization header of an admin key made in the shared database."""
        return auth(self.admin_key)

    def __iter__(self) -> Iterator[Replica]:
        return iter(self.replicas)

    def __getitem__(self, i: int) -> Replica:
        return self.replicas[i]

    def __len__(self) -> int:
        return len(self.replicas)


def seed(root: Path, database_url: str) -> Path:
    """A data directory holding what a replica needs locally, its taxonomy and index published
    into ``database_url`` (see :func:`tests.serve.helpers.seed_data_dir`)."""
    template = root / "seed"
    seed_data_dir(template, database={"url": database_url})
    return template


@contextlib.contextmanager
def replica_set(
    database_url: str, root: Path, *, n: int = 3, env: Mapping[str, str] | None = None, wait: bool = True,
    timeout: float = 180.0,
) -> Iterator[ReplicaSet]:
    """``n`` replicas (``r0`` … under ``root``) on ``database_url``, started and (``wait``)
    ready; stopped when the block ends, whatever happened. ``env``: extra environment for
    every replica (e.g. ``TAGSMITH_SERVER__REFRESH_INTERVAL_S``)."""
    template = seed(root, database_url)
    store = KeyStore(database_url)
    admin_key = store.create(frozenset({"admin"}), "replica-tests")[1]
    store.close()
    replicas: list[Replica] = []
    for i in range(n):
        data_dir = root / f"r{i}"
        shutil.copytree(template, data_dir)
        replica_env = {
            **HASHING_ENV, "TAGSMITH_TAGGING__PIPELINE": "knn", **(env or {}),
            "TAGSMITH_DATA_DIR": str(data_dir), "TAGSMITH_DATABASE_URL": database_url,
        }
        replicas.append(Replica(f"r{i}", data_dir, free_port(), replica_env))
    try:
        for replica in replicas:
            replica.start()
        if wait:
            for replica in replicas:
                replica.wait(timeout)
        yield ReplicaSet(replicas, database_url, admin_key)
    finally:
        for replica in replicas:
            with contextlib.suppress(Exception):
                replica.stop()


def replica_logs(replicas: ReplicaSet) -> str:
    """Every replica's recent log, for an assertion message."""
    return "\n".join(f"--- {r.name}\n{r.log()}" for r in replicas)


__all__ = ["Replica", "ReplicaSet", "replica_logs", "replica_set", "seed"]
