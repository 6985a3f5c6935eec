"""`tagsmith tag-file --engine ray --address HOST:PORT`: a Ray cluster started apart from the
driver (`ray start --head` on loopback, 2 CPUs, from the venv's `ray`), 240 MWPD products
tagged through it, the output equal to the single-process path's id by id, in input order.

The cluster is ours alone: its own temp dir, ports (GCS, the dashboard agent) and authentication token,
started in its own session and stopped by killing exactly that session's processes (and any
that left it), bounded. Not `ray stop`: it kills every Ray process of the machine, other
runs' clusters included. Hashing embedder and the shop index: this is about the engine's
cluster mode, not MiniLM. Process tier; needs the ray extra (skipped without it, except under
CI, where that is a failure).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.contract import Product
from serve.runtime import build_runtime
from tests.conftest import free_port, shared_file
from tests.serve.helpers import HASHING_ENV, seed_data_dir, service_settings
from tests.serve.test_tag_file_ray import worker_counts

pytestmark = pytest.mark.process  # a Ray cluster's processes, a CLI subprocess

if os.environ.get("CI") != "true":
    pytest.importorskip("ray", reason="the ray extra is not installed (scripts/install-ray.sh)")

BIN = Path(sys.executable).parent
N, BATCH = 240, 20
ENV = {
    **HASHING_ENV, "TAGSMITH_TAGGING__PIPELINE": "hybrid", "RAY_DISABLE_USAGE_STATS": "1",
    # Ray 2.60 turns token authentication on when ~/.ray/auth_token exists (a local ray.init
    # writes one): the head and the driver share an explicit token of their own instead
    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
    # loopback only: Ray otherwise swaps 127.0.0.1 for the machine's address
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}


def _products() -> list[dict[str, Any]]:
    rows = []
    with shared_file("mwpd/pool.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            if (r["title"] or "").strip():
                rows.append({"id": r["id"], "title": r["title"][:500], "description": (r["description"] or "")[:1000]})
            if len(rows) == N:
                break
    return rows


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) == sid:  # the session id
                    pids.append(int(entry))
    return pids


@contextlib.contextmanager
def ray_head(env: dict[str, str]) -> Iterator[str]:
    """A Ray head on 127.0.0.1 with 2 CPUs; yields its address. Stopped on exit, whatever
    happened: SIGTERM to its session, SIGKILL to what is left after 15 s."""
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths must fit
    port = free_port()
    log = temp / "head.log"
    with log.open("wb") as fh:
        head = subprocess.Popen(
            [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
             "--num-cpus", "2", "--disable-usage-stats", "--include-dashboard=false", "--temp-dir", str(temp),
             "--dashboard-agent-listen-port", str(free_port()),
             "--object-store-memory", str(256 * 1024 * 1024)],
            stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180  # seconds when idle; a loaded machine takes many times that
        while b"Ray runtime started" not in log.read_bytes():
            assert head.poll() is None, f"ray start exited ({head.returncode}):\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"ray start did not come up:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
            pids = _session_pids(head.pid)  # the session `ray start` leads: the cluster's processes
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait_s
            while _session_pids(head.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if not _session_pids(head.pid):
                break
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=5)
        left = _session_pids(head.pid)
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"Ray processes left running: {left}"


def _comparable(line: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(line)
    record.pop("timings_ms")  # wall-clock times differ from run to run
    return record


def test_tag_file_on_a_separately_started_cluster_equals_the_single_process_output(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    seed_data_dir(data_dir, tagging={"pipeline": "hybrid"})
    rows = _products()
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    runtime = build_runtime(service_settings(data_dir, tagging={"pipeline": "hybrid"}))
    try:
        products = [Product.model_validate(r) for r in rows]
        reference = [_comparable(r.model_dump_json()) for start in range(0, N, BATCH)
                     for r in runtime.tagger.tag_many(products[start : start + BATCH])]
    finally:
        runtime.close()

    # the workers run the code the driver runs: the cluster gets this checkout's PYTHONPATH
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | ENV | {"TAGSMITH_DATA_DIR": str(data_dir)}
    out, log = tmp_path / "out.jsonl", tmp_path / "tag-file.log"
    with ray_head(env) as address, log.open("wb") as fh:
        done = subprocess.run(
            [str(BIN / "tagsmith"), "tag-file", str(src), "-o", str(out), "--engine", "ray",
             "--address", address, "--batch-size", str(BATCH)],
            stdout=fh, stderr=subprocess.STDOUT, env=env | {"COLUMNS": "200"}, timeout=240,
        )
    text = log.read_text()
    assert done.returncode == 0, text[-3000:]
    assert f"ray: {address}, one per CPU worker(s), {N:,} products" in " ".join(text.split()), text[-3000:]
    assert f"{N} tagged, 0 already in" in text, text[-3000:]
    # the pool has 2 actors; one may have tagged every batch (Ray Data does not wait for both)
    counts = worker_counts(text)
    assert 1 <= len(counts) <= 2 and sum(counts.values()) == N, counts
    records = [_comparable(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in records] == [r["id"] for r in rows]  # every id once, in input order
    assert records == reference
