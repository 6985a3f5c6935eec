"""`tagsmith serve` as a user runs it: a real process on loopback, bounded waits."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port

TAGSMITH = str(Path(sys.executable).parent / "tagsmith")


def test_serve_starts_and_reports_health_and_readiness(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [TAGSMITH, "serve", "--port", str(port)],
        env={**os.environ, "TAGSMITH_DATA_DIR": str(tmp_path)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise AssertionError("service did not answer /healthz within 120 s")
        ready = httpx.get(f"{base}/readyz", timeout=60)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["llm"] == "ok"
        assert httpx.get(f"{base}/openapi.json", timeout=10).status_code == 200
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
