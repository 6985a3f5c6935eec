"""The openai backend against a real OpenAI-compatible server on loopback
(llama-cpp-python's server running the packaged SmolLM2), plus injected transport faults."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import httpx2
import pytest

from agent.contract import Product
from agent.llm import (
    ChatMessage,
    LLMUnavailableError,
    create_backend,
    default_gguf_path,
    tags_schema,
)
from agent.llm.manifest import MANIFEST_FILE, MANIFEST_FORMAT, profile_json
from agent.llm.openai_compat import OpenAICompatBackend, structured_output_kwargs
from agent.tagger import Tagger, TaggerConfig
from retrieval import CandidateGenerator
from tests.conftest import free_port


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    gguf = default_gguf_path()
    assert gguf is not None
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "smollm2",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--verbose", "False"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180  # ~10 s idle; a loaded 2-core machine can take many times that
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {proc.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise RuntimeError("llama_cpp.server did not become ready in 180 s")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_constrained_generation_through_a_real_server(llama_server: str) -> None:
    backend = create_backend(
        "openai", base_url=llama_server, model="smollm2", structured_output="json_object"
    )
    allowed = [f"c{i:02d}" for i in range(40)]
    for product in ["red cotton t-shirt", "iPhone 12 128GB", "dog chew toy", "green tea 100 bags"]:
        gen = backend.generate(
            [ChatMessage("user", f"Pick the tag id for: {product}")], tags_schema(allowed), max_tokens=48
        )
        assert gen.parsed is not None, gen.text
        assert set(gen.parsed["tags"]) <= set(allowed)
        assert gen.prompt_tokens > 0 and gen.latency_ms > 0
    backend.close()


def test_stopped_server_is_reported_unavailable() -> None:
    backend = create_backend(
        "openai", base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", max_retries=0, timeout_s=2
    )
    with pytest.raises(LLMUnavailableError, match="unreachable"):
        backend.generate([ChatMessage("user", "x")], tags_schema(["a"]))


def _backend(handler: httpx2.MockTransport, **kw: object) -> OpenAICompatBackend:
    return OpenAICompatBackend("http://llm.test/v1", "m", max_retries=0, transport=handler, **kw)  # type: ignore[arg-type]


def test_server_error_status_becomes_unavailable_error() -> None:
    transport = httpx2.MockTransport(lambda r: httpx2.Response(500, json={"error": {"message": "boom"}}))
    with pytest.raises(LLMUnavailableError, match="500"):
        _backend(transport).generate([ChatMessage("user", "x")], tags_schema(["a"]))


def test_timeout_becomes_unavailable_error() -> None:
    def handler(request: httpx2.Request) -> httpx.Response:
        raise httpx2.ReadTimeout("slow", request=request)

    with pytest.raises(LLMUnavailableError):
        _backend(httpx2.MockTransport(handler)).generate([ChatMessage("user", "x")], tags_schema(["a"]))


def test_garbage_output_is_returned_unparsed_not_raised() -> None:
    body = {
        "id": "x", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "finish_reason": "length",
                     "message": {"role": "assistant", "content": '{"tags": ["'}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
    gen = _backend(httpx2.MockTransport(lambda r: httpx2.Response(200, json=body))).generate(
        [ChatMessage("user", "x")], tags_schema(["a"])
    )
    assert gen.parsed is None and gen.text == '{"tags": ["' and gen.finish_reason == "length"


@pytest.mark.parametrize("mode", ["json_schema", "json_object", "vllm"])
def test_schema_is_sent_the_way_each_server_enforces_it(mode: str) -> None:
    seen: list[bytes] = []

    def handler(request: httpx2.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx2.Response(500)

    with pytest.raises(LLMUnavailableError):
        _backend(httpx2.MockTransport(handler), structured_output=mode).generate(
            [ChatMessage("user", "x")], tags_schema(["only-id"])
        )
    assert b"only-id" in seen[0] and b"guided_json" not in seen[0]
    key = {"json_schema": b'"json_schema"', "json_object": b'"json_object"', "vllm": b'"structured_outputs"'}[mode]
    assert key in seen[0]
    assert structured_output_kwargs(mode, {"x": 1})  # type: ignore[arg-type]


def test_fine_tuned_prompt_shape_is_sent_to_the_server(
    llama_server: str, tmp_path: Path, generator: CandidateGenerator,
    dev_products: list[tuple[Product, str]],
) -> None:
    """Through vLLM a fine-tuned model is served by name, not path: the manifest in the
    local model directory (``TAGSMITH_LLM__MODEL_DIR``) must still make the agent send the
    prompt the model was trained on. The requests are recorded by a transport that forwards
    them to the real server."""
    from agent.finetune.run import FINETUNE_PROFILE

    (tmp_path / MANIFEST_FILE).write_text(
        json.dumps({"format": MANIFEST_FORMAT, "prompt": profile_json(FINETUNE_PROFILE)}), encoding="utf-8"
    )
    sent: list[dict[str, object]] = []
    real = httpx2.HTTPTransport()

    def record(request: httpx2.Request) -> httpx2.Response:
        sent.append(json.loads(request.read()))
        return real.handle_request(request)

    backend = create_backend(
        "openai", base_url=llama_server, model="smollm2", structured_output="json_object",
        model_dir=str(tmp_path), transport=httpx2.MockTransport(record),
    )
    assert backend.info.prompt_profile == FINETUNE_PROFILE
    tagger = Tagger(generator, backend, config=TaggerConfig(pipeline="rag", llm_mode="generate"))
    results = tagger.tag_many([product for product, _ in dev_products[:3]])
    assert all(r.tags and all(generator.snapshot.is_active(t.id) for t in r.tags) for r in results)
    assert len(sent) >= 3
    for body in sent:
        messages = body["messages"]
        assert isinstance(messages, list)
        assert messages[0]["content"].startswith("Pick the candidate category")  # tag.ft1
        user = messages[-1]["content"]
        assert user.count("<example>") <= FINETUNE_PROFILE.max_examples
    # without a model directory the untuned prompt goes out
    plain = create_backend("openai", base_url=llama_server, model="smollm2")
    assert plain.info.prompt_profile is None
    with pytest.raises(LLMUnavailableError, match="does not exist"):
        create_backend("openai", base_url=llama_server, model_dir=str(tmp_path / "missing"))
