"""A tiny real attribute fine-tune (issue #19): SmolLM2 (exported from the packaged GGUF)
trained a few steps on synthetic attribute prompts writes a model directory whose manifest
says task ``attributes``; the model, loaded through the backend factory, answers the
attribute step in its schema (constrained decoding of the compact JSON object); an
interrupted-then-resumed run equals an uninterrupted one. Hashing embedder (no MiniLM)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from agent.attributes import AttributeExtractor
from agent.attributes.knowledge import example_text
from agent.finetune import FinetuneJob, TrainConfig, finetune
from agent.finetune.attributes import agent_profile, loo_neighbours
from agent.finetune.train import Progress
from agent.llm import create_backend
from agent.llm.base import ChatMessage, Generation, LLMBackend, ModelInfo
from agent.llm.json_decode import compile_object
from agent.llm.manifest import ATTRIBUTES_TASK, MANIFEST_FILE, attribute_profile_of, read_manifest
from retrieval import HashingEmbedder
from retrieval.examples import Example
from taxonomy import Snapshot
from tests.finetune.test_attribute_data import _examples, _snapshot

pytestmark = pytest.mark.slow

# 3 steps of 2 prompts, LoRA on the last 2 layers: the synthetic prompts are ~400 tokens
JOB = FinetuneJob(
    task=ATTRIBUTES_TASK,
    train=TrainConfig(batch_size=2, max_steps=3, checkpoint_every=2, lora_layers=2, lora_r=4, warmup_steps=1,
                      learning_rate=1e-3, max_tokens=2048),
    val_fraction=0.1, max_val=2, lexical_folds=2,
)


class _Interrupt(Exception):
    pass


class _Recording:
    """Hands calls on to a backend and keeps each (schema, generation)."""

    def __init__(self, inner: LLMBackend) -> None:
        self.inner = inner
        self.calls: list[tuple[dict[str, Any], Generation]] = []

    @property
    def info(self) -> ModelInfo:
        return self.inner.info

    def generate(
        self, messages: Sequence[ChatMessage], schema: Mapping[str, Any], *, max_tokens: int = 64,
        temperature: float = 0.0, seed: int = 0, top_logprobs: int = 0,
    ) -> Generation:
        gen = self.inner.generate(messages, schema, max_tokens=max_tokens, temperature=temperature, seed=seed,
                                  top_logprobs=top_logprobs)
        self.calls.append((dict(schema), gen))
        return gen

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def snap() -> Snapshot:
    return _snapshot()


@pytest.fixture(scope="module")
def pool() -> list[Example]:
    return _examples(24)


@pytest.fixture(scope="module")
def tiny_model(
    tmp_path_factory: pytest.TempPathFactory, hf_model_dir: Path, base_cache: Path, snap: Snapshot,
    pool: list[Example],
) -> Iterator[tuple[Path, dict[str, object]]]:
    out = tmp_path_factory.mktemp("ft") / "model"
    manifest = finetune(pool, snap, HashingEmbedder(), out, JOB, cache_dir=base_cache, threads=2)
    yield out, manifest


def test_tiny_attribute_finetune_writes_a_model_directory_with_manifest(
    tiny_model: tuple[Path, dict[str, object]],
) -> None:
    out, manifest = tiny_model
    assert json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8")) == manifest
    assert manifest["task"] == ATTRIBUTES_TASK and manifest["kind"] == "fine-tuned" and manifest["steps"] == 3
    assert attribute_profile_of(read_manifest(out)) == agent_profile()  # the agent's own prompt
    assert "blend" not in manifest and "validation_vote_top1" not in manifest  # the category step's
    data = manifest["data"]
    assert isinstance(data, dict) and data["folds"] == 2 and data["items"] == 24 and data["train_items"] >= 20
    validation = manifest["validation"]
    assert isinstance(validation, list) and validation[-1]["val_n"] == 2
    assert 0.0 <= validation[-1]["val_token_accuracy"] <= 1.0 and 0.0 <= validation[-1]["val_exact"] <= 1.0
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert (out / "adapter" / "adapter_config.json").is_file()
    rows = [json.loads(line) for line in (out / "dataset.jsonl").open(encoding="utf-8")]
    assert all(set(json.loads(r["answer"])) == {"Brand", "Part Number", "Width", "Color", "Material"} for r in rows)


def test_the_attribute_model_answers_the_attribute_step_in_its_schema(
    tiny_model: tuple[Path, dict[str, object]], snap: Snapshot, pool: list[Example],
) -> None:
    out, _ = tiny_model
    backend = create_backend("embedded", model=str(out), n_threads=2)
    assert backend.info.name == "transformers"
    assert backend.info.prompt_profile is None and backend.info.blend_weight is None  # not a tagging model
    recording = _Recording(backend)
    extractor = AttributeExtractor.fit(snap, pool)
    neighbours = loo_neighbours(pool, [0, 1], snap, HashingEmbedder())
    for i in (0, 1):
        tags, answer = extractor.extract_with_llm(snap, example_text(pool[i]), "parts", neighbours[i], "on", recording)
        assert answer is not None and answer.answered and answer.unavailable is None
        allowed = {a.id for a in snap.attributes_for("parts")}
        assert {t.attribute for t in tags} <= allowed
    assert len(recording.calls) >= 2
    for schema, gen in recording.calls:
        machine = compile_object(schema)
        assert machine is not None and gen.finish_reason == "stop"
        assert machine.accepts(gen.text), gen.text  # the schema's compact language, every time
        assert isinstance(gen.parsed, dict) and list(gen.parsed) == list(schema["properties"])
    backend.close()


def test_resumed_attribute_training_equals_uninterrupted(
    tiny_model: tuple[Path, dict[str, object]], tmp_path: Path, snap: Snapshot, pool: list[Example],
    base_cache: Path,
) -> None:
    from safetensors.numpy import load_file

    reference, manifest = tiny_model
    out = tmp_path / "model"

    def stop_at_3(p: Progress) -> None:
        if p.step == 3:  # the checkpoint of step 2 is on disk, step 3's work is lost
            raise _Interrupt

    with pytest.raises(_Interrupt):
        finetune(pool, snap, HashingEmbedder(), out, JOB, cache_dir=base_cache, threads=2, progress=stop_at_3)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000002.pt"]
    resumed = finetune(pool, snap, HashingEmbedder(), out, JOB, cache_dir=base_cache, threads=2)
    log = (out / "train.log").read_text(encoding="utf-8")
    assert "resumed from step-0000002.pt" in log and "dataset reused" in log
    before, after = manifest["validation"], resumed["validation"]
    assert isinstance(before, list) and isinstance(after, list) and len(before) == len(after) == 1
    assert after[0]["val_exact"] == before[0]["val_exact"]
    assert after[0]["val_nll"] == pytest.approx(before[0]["val_nll"], abs=1e-4)
    a = load_file(str(reference / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert abs(a[key] - b[key]).max() < 1e-5, key
