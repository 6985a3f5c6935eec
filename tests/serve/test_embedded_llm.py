"""The service on the real embedded LLM (SmolLM2 on llama.cpp): readiness canary and a
tagging request through the rag pipeline."""

from __future__ import annotations

from pathlib import Path

from agent.llm import LLMBackend
from tests.serve.helpers import auth, make_keys, running_app, service_settings


def test_rag_pipeline_on_the_embedded_llm(shop_dir: Path, embedded_llm: LLMBackend) -> None:
    keys = make_keys(shop_dir)
    with running_app(service_settings(shop_dir, tagging={"pipeline": "rag"}), llm=embedded_llm) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["llm"] == "ok", ready.text
        r = client.post("/v1/tags", json={"title": "Cast iron skillet 12 inch, pre-seasoned"}, headers=auth(keys["tags"]))
        assert r.status_code == 200, r.text
        body = r.json()
        llm = body["evidence"]["llm"]
        assert llm["attempts"] == 1 and llm["model"] and llm["prompt_tokens"] > 0
        assert body["degraded"] is False and body["pipeline"] == "rag"
        assert body["tags"][0]["id"].startswith("kitchen/")
        metrics = client.get("/metrics").text
        assert 'tagsmith_llm_latency_seconds_count{outcome="ok"}' in metrics
