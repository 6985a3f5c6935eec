"""N real ``tagsmith serve`` processes (replicas) on one database, each with its own data
directory (its own index generations, caches, staging), on loopback ports; kill one
(SIGKILL by default) and restart it on a fresh port.

    with Replicas(tmp_path, database_url, 3) as replicas:   # seeded, started, ready
        replicas[0].base                                    # "http://127.0.0.1:PORT"
        replicas.kill(1); replicas.restart(1)                 # or freeze(i) / thaw(i): SIGSTOP / SIGCONT
        replicas.admin                                      # headers of an admin key (in the database)

The shop taxonomy is imported into the database and its examples published as the first
replica's index, copied to the others (:func:`tests.serve.helpers.seed_data_dir`); the
hashing embedder and the ``knn`` pipeline unless ``env`` says otherwise.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from serve.keys import KeyStore
from tests.conftest import free_port
from tests.serve.helpers import (
    HASHING_ENV,
    auth,
    seed_data_dir,
    start_server,
    stop_server,
    wait_ready,
)


@dataclass
class Replica:
    name: str
    data_dir: Path
    env: dict[str, str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Replicas:
    def __init__(self, root: Path, database_url: str, n: int, *, env: dict[str, str] | None = None,
                 ready_timeout: float = 180.0) -> None:
        """``env``: more environment for every replica (e.g. ``TAGSMITH_JOBS__LEASE_S``)."""
        self.root = root
        self.database_url = database_url
        self.ready_timeout = ready_timeout
        first = root / "r0"
        seed_data_dir(first, database={"url": database_url})
        for i in range(1, n):
            shutil.copytree(first, root / f"r{i}")
        base_env = {**HASHING_ENV, "TAGSMITH_DATABASE_URL": database_url, "TAGSMITH_TAGGING__PIPELINE": "knn",
                    **(env or {})}
        self.replicas = [
            Replica(f"r{i}", root / f"r{i}", {**base_env, "TAGSMITH_DATA_DIR": str(root / f"r{i}")}) for i in range(n)
        ]
        store = KeyStore(database_url)
        self.admin = auth(store.create(frozenset({"admin"}), "replicas-admin")[1])
        self.tags = auth(store.create(frozenset({"tags"}), "replicas-tags")[1])
        store.close()

    def __len__(self) -> int:
        return len(self.replicas)

    def __getitem__(self, index: int) -> Replica:
        return self.replicas[index]

    def start(self, index: int) -> Replica:
        """Start one (not waiting for it: :meth:`wait`)."""
        replica = self.replicas[index]
        assert not replica.running, f"{replica.name} is running"
        replica.port = free_port()
        replica.proc = start_server(replica.port, replica.env)
        return replica

    def wait(self, index: int) -> Replica:
        replica = self.replicas[index]
        assert replica.proc is not None
        wait_ready(replica.proc, replica.base, replica.env, timeout=self.ready_timeout)
        return replica

    def start_all(self) -> None:
        """Start every replica at once, then wait until all are ready."""
        for i in range(len(self.replicas)):
            self.start(i)
        with ThreadPoolExecutor(len(self.replicas)) as pool:
            list(pool.map(self.wait, range(len(self.replicas))))

    def kill(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Kill one (SIGKILL: no clean-up at all) and reap it."""
        replica = self.replicas[index]
        assert replica.proc is not None
        replica.proc.send_signal(sig)
        replica.proc.wait(timeout=30)

    def restart(self, index: int) -> Replica:
        """Start a killed or stopped one again (a new port), ready."""
        self.start(index)
        return self.wait(index)

    def freeze(self, index: int) -> None:
        """SIGSTOP one: a replica stalled (its leases expire, its connections stay open)."""
        replica = self.replicas[index]
        assert replica.proc is not None
        replica.proc.send_signal(signal.SIGSTOP)

    def thaw(self, index: int) -> None:
        replica = self.replicas[index]
        if replica.running:
            assert replica.proc is not None
            replica.proc.send_signal(signal.SIGCONT)

    def stop_all(self) -> None:
        for index, replica in enumerate(self.replicas):
            if replica.proc is not None:
                self.thaw(index)  # a frozen one would not hear SIGTERM
                stop_server(replica.proc)

    def __enter__(self) -> Replicas:
        try:
            self.start_all()
        except BaseException:
            self.stop_all()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop_all()
