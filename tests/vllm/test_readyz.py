"""The service's /readyz LLM canary against a real vLLM server that goes away and comes back."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve.vllm_launcher import health_ok
from tests.serve.helpers import running_app, seed_data_dir, service_settings
from tests.vllm.conftest import ManagedVLLM

pytestmark = pytest.mark.vllm


@pytest.mark.timeout(1200)  # includes a second vLLM start (up to START_DEADLINE_S)
def test_readyz_fails_while_vllm_is_stopped_and_recovers(vllm_server: ManagedVLLM, tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed_data_dir(data)
    settings = service_settings(
        data,
        tagging={"pipeline": "rag"},
        llm={"backend": "openai", "base_url": vllm_server.base_url, "model": "tagsmith",
             "structured_output": "json_schema", "timeout_s": 60, "max_retries": 0},
        auth={"dev_mode": True},
    )
    with running_app(settings) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["llm"] == "ok"

        assert vllm_server.stop() == 0  # `tagsmith llm serve` exits cleanly on SIGTERM…
        assert not health_ok(vllm_server.base_url.removesuffix("/v1"))  # …and vLLM is gone
        down = client.get("/readyz")
        assert down.status_code == 503, down.text
        assert down.json()["status"] == "unavailable"
        assert "unreachable" in down.json()["checks"]["llm"]

        vllm_server.start()  # same port, same settings: the service needs no restart
        back = client.get("/readyz")
        assert back.status_code == 200, back.text
        assert back.json()["checks"]["llm"] == "ok"
