"""In-process backend on transformers + torch: runs a Hugging Face model directory (a base
export from ``agent.llm.hf_export`` or a fine-tuned model from ``tagsmith finetune``).

Why not llama.cpp for fine-tuned models: it would need a GGUF conversion (a llama.cpp
checkout's converter, not on PyPI at our pinned version) and re-quantisation after every
fine-tune; the transformers runtime loads the merged weights as written and runs the very
tokenizer and chat template training used. Measured speeds are in docs/finetune.md.

Two ways to answer, both constrained to the allowed values:

- :meth:`generate`: greedy decoding where, at every step, only tokens that keep the text a
  prefix of ``{"tags":["<allowed value>"]}`` are allowed (the schemas of
  :func:`agent.llm.base.tags_schema`), or of a compact JSON object of the request's schema
  (enums, bounded strings, bounded arrays: the attribute step's schemas, decoded by
  :mod:`agent.llm.json_decode`); anything else is refused;
- :meth:`score_options`: one forward pass over the prompt, then the next-token
  distribution read over the options (candidate letters): a probability over the allowed
  answers for the cost of one prompt evaluation.

Prompts of successive calls share their system prompt: the KV cache of the longest
common token prefix with the previous call is reused.
"""

from __future__ import annotations

import os
import threading
import time
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
    option_scores,
    option_token_ids,
    parse_json,
)
from agent.llm.json_decode import Vocabulary, compile_object, token_texts
from agent.llm.manifest import blend_weight_of, profile_of, read_manifest

TAGS_PREFIX = '{"tags":["'
TAGS_SUFFIX = '"]}'


def is_hf_model_dir(model: str | os.PathLike[str] | None) -> bool:
    """A Hugging Face model directory (config + weights), as opposed to a GGUF file/dir."""
    if model is None:
        return False
    path = Path(model).expanduser()
    return path.is_dir() and (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def chat_prompt(tokenizer: Any, messages: Sequence[ChatMessage], assistant_prefix: str = "") -> str:
    """The chat-formatted prompt, opened for the assistant's answer, plus its forced start.
    Fine-tuning (agent.finetune.train) formats its prompts with this same function."""
    text = tokenizer.apply_chat_template(
        [m.as_dict() for m in messages], add_generation_prompt=True, tokenize=False
    )
    return str(text) + assistant_prefix


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` as it sits inside a prompt (no BOS or other added tokens)."""
    return [int(t) for t in tokenizer(text, add_special_tokens=False)["input_ids"]]


def allowed_values(schema: Mapping[str, Any]) -> list[str]:
    """The enum of a :func:`tags_schema` schema; ValueError for any other schema."""
    try:
        values = schema["properties"]["tags"]["items"]["enum"]
    except (KeyError, TypeError) as exc:
        raise ValueError("the transformers backend only supports tags_schema() schemas") from exc
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise ValueError("tags schema without a non-empty string enum")
    return list(dict.fromkeys(values))


class TransformersBackend:
    """A Hugging Face causal LM in this process; one request at a time."""

    def __init__(self, model_dir: str | os.PathLike[str], *, n_threads: int | None = None, n_ctx: int = 2048) -> None:
        path = Path(model_dir).expanduser()
        if not is_hf_model_dir(path):
            raise ModelNotFoundError(f"not a Hugging Face model directory (config.json + *.safetensors): {path}")
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - install problem
            raise LLMUnavailableError("torch/transformers are not installed") from exc
        if n_threads:
            torch.set_num_threads(n_threads)
        self._path = path
        self._n_ctx = n_ctx
        try:
            self.manifest = read_manifest(path)
            self.tokenizer = AutoTokenizer.from_pretrained(str(path))
            model: Any = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise LLMUnavailableError(f"transformers could not load {path}: {exc}") from exc
        model.eval()
        self._model = model
        self._info = ModelInfo(
            name="transformers", model=str(path), max_concurrency=1, prompt_profile=profile_of(self.manifest),
            blend_weight=blend_weight_of(self.manifest), scores_options=True,
        )
        self._lock = threading.Lock()
        self._cache: Any = None
        self._cached_ids: list[int] = []
        self._vocab: dict[str, list[int]] | None = None
        self._vocabulary: Vocabulary | None = None

    @property
    def info(self) -> ModelInfo:
        return self._info

    # -- forward passes with prefix reuse ------------------------------------------------
    def _next_logits(self, ids: list[int]) -> Any:
        """Logits after ``ids``, reusing the cached KV of the longest common prefix."""
        import torch
        from transformers import DynamicCache

        if len(ids) >= self._n_ctx:
            raise LLMUnavailableError(f"prompt of {len(ids)} tokens exceeds the context window ({self._n_ctx})")
        reuse = min(longest_common_prefix(self._cached_ids, ids), len(ids) - 1)  # evaluate at least one token for fresh logits
        if self._cache is None or reuse == 0:
            self._cache, reuse = DynamicCache(), 0
        else:
            self._cache.crop(reuse - self._cache.get_seq_length())  # negative: tokens to drop
        with torch.inference_mode():
            out = self._model(
                input_ids=torch.tensor([ids[reuse:]]), past_key_values=self._cache, use_cache=True,
                logits_to_keep=1,
            )
        self._cache = out.past_key_values
        self._cached_ids = list(ids)
        return out.logits[0, -1].float()

    def _encode(self, text: str) -> list[int]:
        return encode_text(self.tokenizer, text)

    # -- scoring ----------------------------------------------------------------------------
    def score_options(
        self,
        messages: Sequence[ChatMessage],
        options: Sequence[str],
        *,
        assistant_prefix: str = "",
        continuations: Sequence[str] = (),
    ) -> OptionScores:
        import torch

        if not options:
            raise ValueError("options must not be empty")
        option_ids = {o: option_token_ids(self._encode, o, continuations) for o in options}
        missing = [o for o, ids in option_ids.items() if not ids]
        if missing:
            raise ValueError(f"options are not single tokens: {missing[:5]}")
        with self._lock:
            start = time.perf_counter()
            ids = self._encode(chat_prompt(self.tokenizer, messages, assistant_prefix))
            probs_all = torch.softmax(self._next_logits(ids), dim=-1)
            latency_ms = (time.perf_counter() - start) * 1000.0
        raw = {o: float(probs_all[toks].sum()) for o, toks in option_ids.items()}
        return option_scores(raw, prompt_tokens=len(ids), latency_ms=latency_ms)

    # -- constrained generation -------------------------------------------------------------
    def _token_table(self) -> dict[str, list[int]]:
        """Decoded text → token ids, built once: constrained decoding looks up which tokens
        spell a prefix of what may still follow."""
        if self._vocab is None:
            table: dict[str, list[int]] = {}
            for token_id in range(len(self.tokenizer)):
                text = str(self.tokenizer.decode([token_id]))
                if text:
                    table.setdefault(text, []).append(token_id)
            self._vocab = table
        return self._vocab

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
        """Greedy decoding constrained to ``{"tags":["<one allowed value>"]}`` (one item:
        what the agent asks for; the schema's ``maxItems`` above 1 is not used), or to the
        compact answers of an object schema (:func:`agent.llm.json_decode.compile_object`).
        ValueError for a schema of neither kind."""
        try:
            values = allowed_values(schema)
        except ValueError:
            machine = compile_object(schema)
            if machine is None:
                raise ValueError(
                    "the transformers backend supports tags_schema() schemas and compact object "
                    "schemas (enums, bounded strings, bounded arrays)"
                ) from None
            return self._generate_object(messages, machine, max_tokens)
        table = self._token_table()
        with self._lock:
            start = time.perf_counter()
            ids = self._encode(chat_prompt(self.tokenizer, messages, TAGS_PREFIX))
            n_prompt = len(ids)
            text = ""
            targets = [v + TAGS_SUFFIX for v in values]
            finish = "length"
            for _ in range(max(1, max_tokens)):
                remaining = [t[len(text):] for t in targets if t.startswith(text) and len(t) > len(text)]
                allowed: dict[int, str] = {}
                for rest in remaining:
                    for n in range(1, len(rest) + 1):
                        for token_id in table.get(rest[:n], ()):
                            allowed[token_id] = rest[:n]
                if not allowed:
                    break
                logits = self._next_logits(ids)
                best = max(allowed, key=lambda t: (float(logits[t]), -t))
                ids.append(best)
                text += allowed[best]
                if text in targets:
                    finish = "stop"
                    break
            latency_ms = (time.perf_counter() - start) * 1000.0
        full = TAGS_PREFIX + text
        return Generation(
            text=full,
            parsed=parse_json(full),
            prompt_tokens=n_prompt,
            completion_tokens=len(ids) - n_prompt,
            latency_ms=latency_ms,
            finish_reason=finish,
        )

    def _generate_object(self, messages: Sequence[ChatMessage], machine: Any, max_tokens: int) -> Generation:
        """Greedy decoding of a compact JSON object. Text the schema forces (the rest of a
        key, ``":"``, an opening quote) is appended without asking the model, tokenized as
        the tokenizer writes the whole answer (as fine-tuning tokenized its targets) when
        that leaves the tokens so far unchanged: one forward pass for it, not one a token."""
        import torch

        if self._vocabulary is None:
            self._vocabulary = Vocabulary(token_texts(self.tokenizer))
        vocab = self._vocabulary
        with self._lock:
            start = time.perf_counter()
            ids = self._encode(chat_prompt(self.tokenizer, messages))
            n_prompt = len(ids)
            state = machine.start
            text = ""
            finish = "length"
            while len(ids) - n_prompt < max(1, max_tokens):
                forced = machine.forced(state)
                if forced:
                    extra = self._forced_tokens(text, forced, ids[n_prompt:], vocab)
                    if extra:
                        ids.extend(extra)
                        text += forced
                        state = machine.feed(state, forced)
                        if machine.done(state):
                            finish = "stop"
                            break
                        if len(ids) - n_prompt >= max(1, max_tokens):
                            break  # the forced text used the last of the budget
                allowed = vocab.allowed(machine, state)
                if not allowed:
                    break
                logits = self._next_logits(ids)
                best = allowed[int(torch.argmax(logits[torch.tensor(allowed)]))]
                ids.append(best)
                text += vocab.texts[best]
                state = machine.feed(state, vocab.texts[best])
                if machine.done(state):
                    finish = "stop"
                    break
            latency_ms = (time.perf_counter() - start) * 1000.0
        return Generation(
            text=text, parsed=parse_json(text), prompt_tokens=n_prompt,
            completion_tokens=len(ids) - n_prompt, latency_ms=latency_ms, finish_reason=finish,
        )

    def _forced_tokens(self, text: str, forced: str, generated: list[int], vocab: Vocabulary) -> list[int] | None:
        """The tokens that spell ``forced`` after ``generated`` in the tokenizer's own
        tokenization of ``text + forced``; None when that would re-tokenize what is written."""
        full = self._encode(text + forced)
        if full[: len(generated)] != generated or len(full) <= len(generated):
            return None
        extra = full[len(generated):]
        if "".join(vocab.texts[t] if t < len(vocab.texts) else "\ufffd" for t in extra) != forced:
            return None
        return extra

    def describe(self) -> dict[str, Any]:
        """What ``tagsmith doctor`` shows: the directory and its manifest's key facts."""
        m = self.manifest or {}
        val = m.get("validation") or []
        last = val[-1] if val else {}
        return {
            "model": str(self._path),
            "kind": m.get("kind", "export"),
            "task": m.get("task", "category") if m else None,
            "base": m.get("base"),
            "data_sha256": (m.get("data") or {}).get("sha256"),
            "taxonomy": m.get("taxonomy"),
            "val_accuracy": last.get("val_accuracy"),
            "val_vote_top1": m.get("validation_vote_top1"),
            "method": (m.get("hyperparameters") or {}).get("method"),
        }

    def close(self) -> None:
        self._cache = None
        self._cached_ids = []
