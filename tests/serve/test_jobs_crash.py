"""A 2,000-item job survives three SIGKILLs of the real service process: after restarts it
completes with exactly 2,000 results, each custom_id once. An upload killed midway leaves
nothing behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serve.jobs import JobStore
from tests.conftest import free_port
from tests.serve.helpers import HASHING_ENV, auth, make_keys, start_server, stop_server, wait_ready
from tests.serve.test_jobs import TITLES

pytestmark = pytest.mark.process  # SIGKILLs a real server three times

N = 2000


def test_job_survives_sigkill_three_times(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    t = auth(keys["tags"])
    # a 2 s lease: the restarted server takes over the batch its killed predecessor held after 2 s
    env = {"TAGSMITH_DATA_DIR": str(shop_dir), "TAGSMITH_TAGGING__PIPELINE": "knn", "TAGSMITH_JOBS__BATCH_SIZE": "16",
           "TAGSMITH_JOBS__LEASE_S": "2", **HASHING_ENV}
    body = "".join(
        json.dumps({"custom_id": f"c{i:05d}", "product": {"title": f"{TITLES[i % len(TITLES)]} variant {i}"}}) + "\n"
        for i in range(N)
    ).encode()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(port, env)
    try:
        wait_ready(proc, base, env)
        created = httpx.post(f"{base}/v1/jobs", content=body, headers=t, timeout=60)
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        kills = []
        for threshold in (0.1, 0.35, 0.6):
            deadline = time.monotonic() + 300
            while True:
                job = httpx.get(f"{base}/v1/jobs/{job_id}", headers=t, timeout=30).json()
                done = job["counts"]["succeeded"] + job["counts"]["failed"]
                if done >= threshold * N:
                    break
                assert time.monotonic() < deadline, f"no progress past {done}"
                time.sleep(0.05)
            if job["state"] != "running":  # it finished between two polls (a stalled test process)
                assert job["state"] == "completed" and done == N, job
                break
            proc.send_signal(signal.SIGKILL)  # mid-job, as last seen
            proc.wait(timeout=30)
            kills.append(done)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            proc = start_server(port, env)
            wait_ready(proc, base, env)
        assert kills, "no kill landed mid-job"
        deadline = time.monotonic() + 600
        while (job := httpx.get(f"{base}/v1/jobs/{job_id}", headers=t, timeout=30).json())["state"] != "completed":
            assert job["state"] == "running" and time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["counts"] == {"total": N, "succeeded": N, "failed": 0}
        results = httpx.get(f"{base}/v1/jobs/{job_id}/results", headers=t, timeout=60).text.splitlines()
    finally:
        stop_server(proc)
    ids = [json.loads(line)["custom_id"] for line in results]
    assert len(ids) == N and set(ids) == {f"c{i:05d}" for i in range(N)}
    store = JobStore(shop_dir / "jobs" / "jobs.db")
    rows = store.results(job_id)
    store.close()
    assert [r.seq for r in rows] == list(range(N)) and [r.custom_id for r in rows] == [f"c{i:05d}" for i in range(N)]
    print(f"killed at {kills} of {N} done; {N} results, each custom_id once")


def test_an_upload_killed_midway_leaves_no_job_and_no_files(shop_dir: Path) -> None:
    """SIGKILL while a chunked upload streams in: after the restart there is no job, and the
    staging directory it left is removed (an upload is visible only once committed)."""
    keys = make_keys(shop_dir)
    t = {**auth(keys["tags"]), "content-type": "application/jsonl"}
    env = {"TAGSMITH_DATA_DIR": str(shop_dir), "TAGSMITH_TAGGING__PIPELINE": "knn", **HASHING_ENV}
    stop = threading.Event()

    def trickle() -> Iterator[bytes]:  # a line every 10 ms until the server is gone (bounded)
        for i in range(6000):
            if stop.is_set():
                return
            yield (json.dumps({"custom_id": f"k{i}", "product": {"title": TITLES[i % len(TITLES)]}}) + "\n").encode()
            time.sleep(0.01)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(port, env)
    uploader = None
    try:
        wait_ready(proc, base, env)
        uploader = threading.Thread(target=_post_quietly, args=(f"{base}/v1/jobs", trickle(), t), daemon=True)
        uploader.start()
        jobs = shop_dir / "jobs"
        deadline = time.monotonic() + 60
        while not any(_size(p / "input.jsonl") > 0 for p in jobs.glob(".upload_*")):
            assert time.monotonic() < deadline, "the upload never reached the disk"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        stop.set()
        uploader.join(30)
        left = list(jobs.glob(".upload_*"))
        assert left, "the killed upload should have left its staging directory"
        for path in left:  # as if the restart came later: a fresh directory is never removed
            os.utime(path, (time.time() - 60, time.time() - 60))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_server(port, env)
        wait_ready(proc, base, env)
        assert httpx.get(f"{base}/v1/jobs", headers=t, timeout=30).json()["total"] == 0
        deadline = time.monotonic() + 60
        while list(jobs.glob(".upload_*")) or list(jobs.glob("job_*")):  # the worker's start cleans up
            assert time.monotonic() < deadline, "the staging directory was not removed"
            time.sleep(0.1)
    finally:
        stop.set()
        stop_server(proc)


def _size(path: Path) -> int:
    """0 for a file not there (yet: the staging directory is made before its input file)."""
    try:
        return path.stat().st_size
    except (FileNotFoundError, NotADirectoryError):
        return 0


def _post_quietly(url: str, body: Iterator[bytes], headers: dict[str, str]) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the server is killed under it
        httpx.post(url, content=body, headers=headers, timeout=120)
