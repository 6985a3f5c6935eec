"""The service on the real models, end to end (part of the smoke set of the default tier):
the packaged MiniLM embeds the examples and the request, the embedded LLM (SmolLM2 on
llama.cpp) answers through the rag pipeline; readiness canary and metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.llm import LLMBackend
from tests.serve.helpers import auth, make_keys, running_app, seed_data_dir, service_settings

REAL_EMBEDDER = {"backend": "sentence-transformers"}


@pytest.mark.smoke
def test_rag_pipeline_on_the_real_models(tmp_path: Path, embedded_llm: LLMBackend) -> None:
    data = tmp_path / "data"
    seed_data_dir(data, embedder=REAL_EMBEDDER)
    keys = make_keys(data)
    settings = service_settings(data, tagging={"pipeline": "rag"}, embedder=REAL_EMBEDDER)
    with running_app(settings, llm=embedded_llm) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["llm"] == "ok", ready.text
        r = client.post("/v1/tags", json={"title": "Cast iron skillet 12 inch, pre-seasoned"}, headers=auth(keys["tags"]))
        assert r.status_code == 200, r.text
        body = r.json()
        llm = body["evidence"]["llm"]
        assert llm["attempts"] == 1 and llm["model"] and llm["prompt_tokens"] > 0
        assert body["degraded"] is False and body["pipeline"] == "rag"
        assert body["tags"][0]["id"].startswith("kitchen/")
        assert client.app.state.tagsmith.services.tagging.embedder.name.startswith("all-MiniLM-L6-v2@")  # type: ignore[attr-defined]
        metrics = client.get("/metrics").text
        assert 'tagsmith_llm_latency_seconds_count{outcome="ok"}' in metrics
