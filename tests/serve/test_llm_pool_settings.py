"""Settings of the LLM endpoint pool and of the embedder's bulk runtime."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent.llm.openai_compat import OpenAICompatBackend
from agent.llm.pool import EndpointPool
from retrieval.onnx_runtime import FLOAT_RUNTIMES_BY_SPEED, fastest_runtime, installed
from serve.backends import backend_from_settings
from serve.runtime import bulk_settings
from serve.settings import EmbedderSettings, LLMSettings, Settings

A, B = "http://10.0.0.1:8001/v1", "http://10.0.0.2:8001/v1"


def test_a_comma_separated_base_url_is_a_list_of_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGSMITH_LLM__BASE_URL", f"{A}, {B}")
    llm = Settings().llm
    assert llm.base_urls == [A, B] and llm.base_url is None and llm.endpoints() == [A, B]


def test_base_urls_from_json_and_one_url_stays_the_plain_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGSMITH_LLM__BASE_URLS", f'["{A}", "{B}"]')
    assert Settings().llm.endpoints() == [A, B]
    one = LLMSettings(base_urls=[A])
    assert one.base_url == A and one.base_urls == [] and one.endpoints() == [A]
    assert LLMSettings(base_url=A).endpoints() == [A] and LLMSettings().endpoints() == []


@pytest.mark.parametrize("kw", [
    {"base_url": A, "base_urls": [B]},
    {"base_url": f"{A},{B}", "base_urls": [B]},
    {"base_urls": [A, A]},
    {"eject_s": 10.0, "eject_max_s": 5.0},
])
def test_ambiguous_endpoint_settings_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        LLMSettings(**kw)  # type: ignore[arg-type]


def test_the_backend_of_several_urls_is_a_pool_of_one_a_plain_client() -> None:
    pool = backend_from_settings(Settings(llm=LLMSettings(backend="openai", base_url=f"{A},{B}", max_concurrency=4)))
    single = backend_from_settings(Settings(llm=LLMSettings(backend="openai", base_url=A)))
    try:
        assert isinstance(pool, EndpointPool) and pool.info.max_concurrency == 8
        assert [s.base_url for s in pool.status()] == [A, B] and all(s.healthy for s in pool.status())
        assert isinstance(single, OpenAICompatBackend)
    finally:
        pool.close()
        single.close()


def test_bulk_settings_put_the_embedder_on_its_bulk_runtime() -> None:
    fixed = Settings(embedder=EmbedderSettings(bulk_runtime="onnx"))
    assert bulk_settings(fixed).embedder.runtime == "onnx"
    assert fixed.embedder.runtime == "torch"  # the service's own settings are unchanged
    auto = bulk_settings(Settings(embedder=EmbedderSettings(device="cpu")))
    assert auto.embedder.runtime == next(r for r in FLOAT_RUNTIMES_BY_SPEED if installed(r))
    hashing = Settings(embedder=EmbedderSettings(backend="hashing", bulk_runtime="onnx"))
    assert bulk_settings(hashing).embedder.runtime == "torch"  # no model to export


def test_the_exports_run_on_cpu_only() -> None:
    assert fastest_runtime("cuda") == "torch"
    assert fastest_runtime("cpu") in FLOAT_RUNTIMES_BY_SPEED
