"""Rate limits (429 + Retry-After) and an unavailable LLM backend (503, or a flagged answer)."""

from __future__ import annotations

import time
from pathlib import Path

from agent.llm.fake import FaultInjectingBackend, FixedLatencyBackend
from tests.serve.helpers import assert_error, auth, make_keys, running_app, service_settings


def test_rate_limit_is_per_key_with_retry_after(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    # one token every 4 s: the first three requests cannot earn a fourth, however slow the machine
    settings = service_settings(shop_dir, limits={"rate_per_s": 0.25, "rate_burst": 3})
    with running_app(settings) as client:
        tags, other = auth(keys["tags"]), auth(keys["tags+feedback"])
        statuses = [client.get("/v1/jobs", headers=tags).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        limited = client.get("/v1/jobs", headers=tags)
        error = assert_error(limited, 429, "rate_limited")
        retry_after = int(limited.headers["retry-after"])
        assert 1 <= retry_after <= 4 and "0.25 requests/s" in error["message"]
        # other keys and the open endpoints are not affected
        assert client.get("/v1/jobs", headers=other).status_code == 200
        assert client.get("/healthz").status_code == 200
        time.sleep(retry_after)
        assert client.get("/v1/jobs", headers=tags).status_code == 200
        assert "tagsmith_rate_limited_total 1.0" in client.get("/metrics").text


def down_backend() -> FaultInjectingBackend:
    """Every call fails like an unreachable server."""
    return FaultInjectingBackend(FixedLatencyBackend(0.0), fault_rate=1.0, kinds=("timeout",))


def test_llm_down_is_503_for_tagging_by_default(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    settings = service_settings(shop_dir, tagging={"pipeline": "rag"})
    with running_app(settings, llm=down_backend()) as client:
        r = client.post("/v1/tags", json={"title": "Cast iron skillet"}, headers=auth(keys["tags"]))
        error = assert_error(r, 503, "llm_unavailable")
        assert "injected fault" in error["message"] and int(r.headers["retry-after"]) >= 1
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "injected fault" in ready.json()["checks"]["llm"]
        assert client.get("/healthz").status_code == 200  # alive: the LLM is not part of the process


def test_llm_down_gives_a_flagged_retrieval_answer_when_configured(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    settings = service_settings(shop_dir, tagging={"pipeline": "rag"}, server={"on_llm_unavailable": "degrade"})
    with running_app(settings, llm=down_backend()) as client:
        r = client.post("/v1/tags:batch", json={"products": [{"title": "Cast iron skillet"}, {"title": "wool socks"}]},
                        headers=auth(keys["tags"]))
        assert r.status_code == 200, r.text
        for result, leaf in zip(r.json()["results"], ["kitchen/cookware/pans", "apparel/socks"], strict=True):
            assert result["degraded"] is True and result["needs_review"] is True
            assert result["evidence"]["llm"]["fallback_used"] is True
            assert result["tags"][0]["id"] == leaf  # the retrieval answer
        assert "tagsmith_degraded_results_total 2.0" in client.get("/metrics").text


def test_a_working_llm_is_not_degraded(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    llm = FixedLatencyBackend(0.0)
    with running_app(service_settings(shop_dir, tagging={"pipeline": "rag"}), llm=llm) as client:
        r = client.post("/v1/tags", json={"title": "Cast iron skillet"}, headers=auth(keys["tags"]))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["degraded"] is False and body["evidence"]["llm"]["attempts"] == 1
        assert body["pipeline"] == "rag" and llm.calls >= 1
        assert client.get("/readyz").json()["checks"]["llm"] == "ok"
