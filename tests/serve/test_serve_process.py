"""`tagsmith serve` as a user runs it: a real process on loopback, bounded waits."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.serve.helpers import TAGSMITH, auth, server_log, start_server, stop_server

pytestmark = pytest.mark.process  # a real server process on a fresh data dir


def test_a_fresh_data_dir_answers_health_at_once_and_the_api_when_loaded(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # no installed taxonomy vectors: the first start embeds the packaged taxonomy (minutes),
    # so the checks below surely run while it loads; the server is stopped right after them
    empty = tmp_path / "no-prebuilt"
    empty.mkdir()
    env = {"TAGSMITH_DATA_DIR": str(data), "TAGSMITH_PREBUILT_DIR": str(empty)}
    ensured = subprocess.run([TAGSMITH, "keys", "ensure"], env={**os.environ, **env},
                             capture_output=True, text=True, timeout=120)
    assert ensured.returncode == 0, ensured.stderr
    key = ensured.stdout.strip().splitlines()[-1]
    again = subprocess.run([TAGSMITH, "keys", "ensure"], env={**os.environ, **env},
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "tsk_" not in again.stdout  # a second run creates nothing
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(port, env)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, server_log(env)
            try:
                health = httpx.get(f"{base}/healthz", timeout=5)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "no /healthz within 120 s"
                time.sleep(0.3)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        ready = httpx.get(f"{base}/readyz", timeout=30)
        # the first start embeds the packaged taxonomy (minutes on 2 cores): not ready yet
        assert ready.status_code == 503 and ready.json()["status"] == "starting"
        early = httpx.post(f"{base}/v1/tags", json={"title": "tee"}, headers=auth(key), timeout=30)
        assert early.status_code == 503 and early.json()["error"]["code"] == "not_ready"
        assert int(early.headers["retry-after"]) >= 1
        assert httpx.post(f"{base}/v1/tags", json={"title": "tee"}, timeout=30).status_code == 401
        assert httpx.get(f"{base}/openapi.json", timeout=10).json()["info"]["title"] == "tagsmith"
    finally:
        stop_server(proc)
    # a clean shutdown on SIGTERM, even while loading (uvicorn then re-raises the signal)
    assert proc.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in server_log(env)
