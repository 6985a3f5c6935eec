"""Backend for any OpenAI-compatible server: vLLM in production, llama.cpp's server too.

How the schema is sent depends on the server (``structured_output``):

- ``json_schema`` (default): OpenAI's ``response_format={"type": "json_schema", ...}``;
  vLLM and llama.cpp's C++ ``llama-server`` enforce it during generation.
- ``vllm``: vLLM's ``extra_body={"structured_outputs": {"json": schema}}``.
- ``json_object``: ``response_format={"type": "json_object", "schema": ...}``, the only
  form llama-cpp-python's own server enforces (it ignores ``json_schema``).

vLLM silently ignores the old ``guided_json`` field, so it is never used. The HTTP
transport can be injected: that is how tests inject faults.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import httpx2

from agent.llm.base import (
    ChatMessage,
    Generation,
    LLMRequestRejectedError,
    LLMUnavailableError,
    ModelInfo,
    normalise_logprobs,
    parse_json,
)
from agent.llm.manifest import blend_weight_of, profile_of, read_manifest

StructuredOutput = Literal["json_schema", "json_object", "vllm"]


def structured_output_kwargs(mode: StructuredOutput, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The request fields that make the server enforce ``schema``."""
    if mode == "json_schema":
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "tagsmith_output", "schema": dict(schema), "strict": True},
            }
        }
    if mode == "json_object":
        return {"response_format": {"type": "json_object", "schema": dict(schema)}}
    if mode == "vllm":
        return {"extra_body": {"structured_outputs": {"json": dict(schema)}}}
    raise ValueError(f"unknown structured output mode {mode!r}")


class OpenAICompatBackend:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "EMPTY",
        timeout_s: float = 30.0,
        max_retries: int = 2,
        max_concurrency: int = 32,
        structured_output: StructuredOutput = "json_schema",
        transport: httpx2.BaseTransport | None = None,
        model_dir: str | Path | None = None,
    ) -> None:
        import openai

        # The served weights live on the server; the local copy of their directory (same
        # files) says which prompt shape a fine-tuned model expects.
        self.manifest: dict[str, Any] | None = None
        profile, blend = None, None
        if model_dir is not None:
            if not Path(model_dir).is_dir():
                raise LLMUnavailableError(f"model directory {model_dir} does not exist")
            try:
                self.manifest = read_manifest(Path(model_dir))
                profile, blend = profile_of(self.manifest), blend_weight_of(self.manifest)
            except (OSError, ValueError) as exc:
                raise LLMUnavailableError(f"model directory {model_dir}: {exc}") from exc
        self._info = ModelInfo(
            name="openai", model=model, max_concurrency=max_concurrency,
            prompt_profile=profile, blend_weight=blend,
        )

        structured_output_kwargs(structured_output, {})  # fail fast on a bad mode
        self._structured_output: StructuredOutput = structured_output

        self._openai = openai
        self._model = model
        self._base_url = base_url
        self._http = httpx2.Client(transport=transport, timeout=timeout_s)
        # openai retries connection errors, 408/429/5xx with backoff, bounded by max_retries.
        self._client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key or "EMPTY",
            timeout=timeout_s,
            max_retries=max_retries,
            http_client=self._http,
        )

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def base_url(self) -> str:
        return self._base_url

    def generate(
        self,
        messages: Sequence[ChatMessage],
        schema: Mapping[str, Any],
        *,
        max_tokens: int = 64,
        temperature: float = 0.0,
        seed: int = 0,
        top_logprobs: int = 0,
    ) -> Generation:
        kwargs = structured_output_kwargs(self._structured_output, schema)
        if top_logprobs > 0:
            kwargs.update(logprobs=True, top_logprobs=top_logprobs)
        start = time.perf_counter()
        try:
            resp = self._client.chat.completions.create(
                model=self._model,
                messages=[m.as_dict() for m in messages],  # type: ignore[misc]
                max_tokens=max_tokens,
                temperature=temperature,
                seed=seed,
                **kwargs,
            )
        except (self._openai.APIConnectionError, self._openai.APITimeoutError) as exc:
            raise LLMUnavailableError(f"LLM server at {self._base_url} unreachable: {exc}") from exc
        except self._openai.APIStatusError as exc:
            message = f"LLM server at {self._base_url} answered {exc.status_code}: {_short(exc.message)}"
            if 400 <= exc.status_code < 500:
                raise LLMRequestRejectedError(message, status_code=exc.status_code) from exc
            raise LLMUnavailableError(message) from exc
        latency_ms = (time.perf_counter() - start) * 1000.0
        if not resp.choices:
            raise LLMUnavailableError(f"LLM server at {self._base_url} returned no choices")
        choice = resp.choices[0]
        text = choice.message.content or ""
        usage = resp.usage
        return Generation(
            text=text,
            parsed=parse_json(text),
            logprobs=normalise_logprobs(choice.logprobs),
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            latency_ms=latency_ms,
            finish_reason=choice.finish_reason,
        )

    def probe(self, timeout_s: float = 5.0) -> None:
        """Is the server up? ``GET /models`` (vLLM, llama.cpp's servers answer it) once, no
        retry; raises :class:`LLMUnavailableError` when it does not answer 200."""
        try:
            self._client.with_options(timeout=timeout_s, max_retries=0).models.list()
        except (self._openai.APIConnectionError, self._openai.APITimeoutError) as exc:
            raise LLMUnavailableError(f"LLM server at {self._base_url} unreachable: {exc}") from exc
        except self._openai.APIStatusError as exc:
            raise LLMUnavailableError(
                f"LLM server at {self._base_url} answered {exc.status_code} to GET /models"
            ) from exc

    def close(self) -> None:
        self._client.close()


def _short(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[:limit] + "…"
