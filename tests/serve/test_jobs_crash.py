"""A 2,000-item job survives three SIGKILLs of the real service process: after restarts it
completes with exactly 2,000 results, each custom_id once."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.serve.helpers import HASHING_ENV, auth, make_keys, start_server, stop_server, wait_ready
from tests.serve.test_jobs import TITLES

pytestmark = pytest.mark.process  # SIGKILLs a real server three times

N = 2000


def test_job_survives_sigkill_three_times(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    t = auth(keys["tags"])
    env = {"TAGSMITH_DATA_DIR": str(shop_dir), "TAGSMITH_TAGGING__PIPELINE": "knn", "TAGSMITH_JOBS__BATCH_SIZE": "16",
           **HASHING_ENV}
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
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            assert job["state"] == "running" and done < N, "the kill should land mid-job"
            kills.append(done)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            proc = start_server(port, env)
            wait_ready(proc, base, env)
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
    raw = (shop_dir / "jobs" / job_id / "results.jsonl").read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == N
    print(f"killed at {kills} of {N} done; {N} results, each custom_id once")
