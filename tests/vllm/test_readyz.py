"""The service's /readyz LLM canary against a real vLLM server that becomes unreachable and
reachable again, and `tagsmith llm serve` stopping vLLM on SIGTERM.

The outage is a loopback proxy in front of the session's server taken down and brought back
on the same port (the service sees what it sees when vLLM is gone: connections reset, then
refused); a second vLLM start (80-120 s on 2 cores) is not needed for that. The real stop runs
last in the tier (``STOPS_THE_SERVER``, tests/vllm/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve.vllm_launcher import health_ok
from tests.serve.helpers import running_app, seed_data_dir, service_settings
from tests.tcp_proxy import tcp_proxy
from tests.vllm.conftest import ManagedVLLM

pytestmark = pytest.mark.vllm


@pytest.mark.timeout(1200)  # includes vLLM's start when it comes first (up to START_DEADLINE_S)
def test_readyz_fails_while_vllm_is_unreachable_and_recovers(vllm_server: ManagedVLLM, tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed_data_dir(data)
    with tcp_proxy(vllm_server.port) as proxy:
        settings = service_settings(
            data,
            tagging={"pipeline": "rag"},
            llm={"backend": "openai", "base_url": f"http://127.0.0.1:{proxy.port}/v1", "model": "tagsmith",
                 "structured_output": "json_schema", "timeout_s": 60, "max_retries": 0},
            auth={"dev_mode": True},
        )
        with running_app(settings) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["llm"] == "ok"

            proxy.stop()  # vLLM unreachable for the service (and its pooled connections cut)
            down = client.get("/readyz")
            assert down.status_code == 503, down.text
            assert down.json()["status"] == "unavailable"
            assert "unreachable" in down.json()["checks"]["llm"]

            proxy.start()  # back on the same port: the service needs no restart
            back = client.get("/readyz")
            assert back.status_code == 200, back.text
            assert back.json()["checks"]["llm"] == "ok"


def test_serve_stops_vllm_on_sigterm(vllm_server: ManagedVLLM) -> None:
    """Runs after every other test of the session (conftest): it ends the session's server."""
    assert health_ok(vllm_server.base_url.removesuffix("/v1"))
    assert vllm_server.stop() == 0  # `tagsmith llm serve` exits cleanly on SIGTERM…
    assert not health_ok(vllm_server.base_url.removesuffix("/v1"))  # …and vLLM is gone
