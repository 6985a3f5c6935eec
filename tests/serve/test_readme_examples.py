"""The README's API examples, run as written (bash + curl) against a live `tagsmith serve` on
a fresh, empty data directory: the default taxonomy and shipped examples a new user gets."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.serve.helpers import REPO, TAGSMITH, server_log, start_server, stop_server, wait_ready

pytestmark = pytest.mark.process  # a real server, the README's commands

MARKER = "<!-- tests/serve/test_readme_examples.py runs the next block"
PYTHON_MARKER = "<!-- tests/serve/test_readme_examples.py runs the next block too"


def readme_blocks() -> tuple[str, str]:
    """(the setup block before the marker, the example block after it)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    head, _, tail = text.partition(MARKER)
    assert tail, "README lost its API example marker"
    setup = re.findall(r"```bash\n(.*?)```", head, re.S)[-1]
    examples = re.search(r"```bash\n(.*?)```", tail, re.S)
    assert examples is not None
    return setup, examples.group(1)


def readme_python_block() -> str:
    """The Python client's examples (the block after its marker)."""
    _, _, tail = (REPO / "README.md").read_text(encoding="utf-8").partition(PYTHON_MARKER)
    block = re.search(r"```python\n(.*?)```", tail, re.S)
    assert block is not None, "README lost its Python client example marker"
    return block.group(1)


def test_readme_api_examples_work_as_written(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    setup, examples = readme_blocks()
    env = {**os.environ, "TAGSMITH_DATA_DIR": str(data_dir)}
    key_line = next(line for line in setup.splitlines() if "keys create" in line)
    made = subprocess.run(["bash", "-c", f"set -euo pipefail; {key_line}; echo $KEY"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("tsk_")
    assert ".venv/bin/tagsmith serve --port 8000 &" in setup

    work = tmp_path / "work"
    work.mkdir()
    port = free_port()
    proc = start_server(port, {"TAGSMITH_DATA_DIR": str(data_dir)})
    try:
        # a first start embeds the default taxonomy's ~10,000 node names: minutes on 2 busy cores
        wait_ready(proc, f"http://127.0.0.1:{port}", {"TAGSMITH_DATA_DIR": str(data_dir)}, timeout=420)
        script = examples.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        # curl fails on any HTTP error status: every example must succeed as written
        run = subprocess.run(
            ["bash", "-c", 'set -euo pipefail\ncurl() { command curl --fail-with-body "$@"; }\n' + script],
            cwd=work, env={**env, "KEY": key, "PATH": f"{Path(TAGSMITH).parent}:{os.environ['PATH']}"},
            capture_output=True, text=True, timeout=300,
        )
        assert run.returncode == 0, f"{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
        out = run.stdout
        assert '"status":"ok"' in out and '"id":"sku-1"' in out and 'etag: "1"' in out.lower()
        assert '"added":["acme/loyalty-cards"]' in out and '"example_id":"sku-77"' in out
        # attributes: only the named ones, from Shopify's lists, with their evidence; feedback
        # stores corrected values by id
        assert '"name":"Fabric","values":[{"value_id":"gid://shopify/TaxonomyValue/364","value":"Denim"' in out
        assert '"name":"Size","values":[{"value_id":"gid://shopify/TaxonomyValue/639","value":"32"' in out
        assert '"example_id":"sku-501"' in out and '"gid://shopify/TaxonomyAttribute/1":["gid://shopify/TaxonomyValue/' in out
        job = httpx.get(f"http://127.0.0.1:{port}/v1/jobs", headers={"Authorization": f"Bearer {key}"}, timeout=30).json()
        assert job["total"] == 1 and job["items"][0]["counts"]["total"] == 2
        # the Python client's equivalents, as written, on the same server (after the curl block)
        client = subprocess.run(
            [sys.executable, "-c", readme_python_block().replace("127.0.0.1:8000", f"127.0.0.1:{port}")],
            cwd=work, env={**env, "KEY": key}, capture_output=True, text=True, timeout=300,
        )
        assert client.returncode == 0, f"{client.stdout[-2000:]}\n{client.stderr[-2000:]}"
        lines = client.stdout.splitlines()
        assert lines[0] == "ok" and lines[1].startswith("gid://shopify/TaxonomyCategory/"), client.stdout
        assert "'Fabric': ['Denim']" in lines[2] and "completed 100%" in lines, client.stdout
        assert lines[-1].endswith("'sku-78']") and not any(line.startswith("re-apply") for line in lines), client.stdout
        # one JSON log line per request, with its request id
        httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"X-Request-ID": "readme-check-1"}, timeout=10)
    finally:
        stop_server(proc)
    logged = [json.loads(line) for line in server_log({"TAGSMITH_DATA_DIR": str(data_dir)}).splitlines()
              if line.startswith("{") and "readme-check-1" in line]
    assert logged and logged[0]["route"] == "/healthz" and logged[0]["status"] == 200
