"""Fine-tuning (issue #9): the leave-one-out rule, and a tiny real fine-tune of SmolLM2 whose
model directory loads through the backend factory, answers on-taxonomy, and whose
interrupted-then-resumed training equals an uninterrupted one.

Real model (SmolLM2 exported from the packaged GGUF), real embedder, real MWPD products
from ../shared (skipped when absent)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from agent.contract import Product
from agent.finetune import FinetuneJob, TrainConfig, build_items, exclusion_sets, finetune
from agent.finetune.train import Progress
from agent.llm import create_backend
from agent.llm.manifest import MANIFEST_FILE, PromptProfile
from agent.tagger import Tagger, TaggerConfig
from retrieval import CandidateGenerator, Example, SentenceTransformerEmbedder, build_index
from taxonomy import Snapshot, TagValidator, load_taxonomy
from tests.conftest import shared_file


def _pool(n: int) -> list[Example]:
    with shared_file("mwpd/pool.jsonl").open(encoding="utf-8") as fh:
        rows = [json.loads(line) for _, line in zip(range(n), fh, strict=False)]
    return [Example(r["id"], r["title"] or "-", r["description"][:300], (r["gold_leaf"],)) for r in rows]


@pytest.fixture(scope="module")
def snap() -> Snapshot:
    return load_taxonomy(shared_file("mwpd/taxonomy.json"), "json")


@pytest.fixture(scope="module")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


# -- the leave-one-out rule ------------------------------------------------------------------

def _with_duplicates() -> tuple[list[Example], Example, Example, Example]:
    """40 pool products + an exact duplicate of the first (other id, case and spacing
    changed) and a near-duplicate (one word more)."""
    pool = _pool(40)
    item = pool[0]
    exact = replace(item, id="dup-exact", title="  " + item.title.upper() + " ",
                    description=item.description.replace(" ", "  "))
    near = replace(item, id="dup-near", title=item.title + " bundle")
    return [*pool, exact, near], item, exact, near


def test_exclusion_sets_group_exact_duplicates_only() -> None:
    examples, item, exact, near = _with_duplicates()
    sets = dict(zip([e.id for e in examples], exclusion_sets(examples), strict=True))
    assert sets[item.id] == {item.id, exact.id}
    assert sets[exact.id] == {item.id, exact.id}
    assert sets[near.id] == {near.id}


def test_leave_one_out_retrieval_excludes_self_and_exact_duplicates(
    snap: Snapshot, embedder: SentenceTransformerEmbedder
) -> None:
    examples, item, exact, near = _with_duplicates()
    generator = CandidateGenerator(embedder, snap, build_index(embedder, examples))
    query = embedder.encode([item.text()])
    plain = generator.retrieve_vectors(query)[0]
    assert {n.example.id for n in plain.neighbours[:3]} >= {item.id, exact.id}  # what LOO must remove
    loo = generator.retrieve_vectors(query, exclude=[exclusion_sets(examples)[0]])[0]
    ids = [n.example.id for n in loo.neighbours]
    assert item.id not in ids and exact.id not in ids
    assert ids[0] == near.id  # a near-duplicate is a legitimate neighbour
    assert len(ids) == min(generator.config.neighbours, len(examples) - 2)


def test_training_prompt_never_shows_the_item_itself(snap: Snapshot, embedder: SentenceTransformerEmbedder) -> None:
    examples, item, _, near = _with_duplicates()
    items, stats = build_items(
        examples, snap, embedder, profile=PromptProfile(max_examples=4), select=[0], folds=2
    )
    assert stats.selected == 1 and stats.lexical_folds == 2
    assert len(items) == 1, stats
    user = items[0].user
    shown = [line for line in user.splitlines() if line.startswith("<example>")]
    assert shown and near.title[:40] in shown[0]  # the near-duplicate is the first example
    assert all(f"<example>{item.title}</example>" not in line for line in shown)
    assert f"<example>{item.title.upper()}" not in user
    assert items[0].letter in items[0].letters


# -- a tiny real fine-tune ---------------------------------------------------------------------

class _Interrupt(Exception):
    pass


# a few steps of 2 prompts, LoRA on the last 2 layers only: the forward pass through all 30
# layers is what costs (~0.5 s per prompt on 2 free cores)
JOB = FinetuneJob(
    train=TrainConfig(batch_size=2, max_steps=3, checkpoint_every=2, lora_layers=2, lora_r=4, warmup_steps=1,
                      learning_rate=1e-3),
    val_fraction=0.1, max_val=2, lexical_folds=2,
)


@pytest.fixture(scope="module")
def tiny_model(
    tmp_path_factory: pytest.TempPathFactory, snap: Snapshot, embedder: SentenceTransformerEmbedder, base_cache: Path
) -> Iterator[tuple[Path, dict[str, object]]]:
    out = tmp_path_factory.mktemp("ft") / "model"
    manifest = finetune(_pool(40), snap, embedder, out, JOB, cache_dir=base_cache, threads=2)
    yield out, manifest


@pytest.mark.slow
def test_tiny_finetune_writes_a_model_directory_with_manifest(tiny_model: tuple[Path, dict[str, object]]) -> None:
    out, manifest = tiny_model
    on_disk = json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert on_disk == manifest
    assert manifest["kind"] == "fine-tuned" and manifest["steps"] == 3
    assert isinstance(manifest["base"], dict) and len(str(manifest["base"]["sha256"])) == 64
    assert isinstance(manifest["data"], dict) and len(str(manifest["data"]["sha256"])) == 64
    validation = manifest["validation"]
    assert isinstance(validation, list) and 0.0 <= validation[-1]["val_accuracy"] <= 1.0
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert (out / "adapter" / "adapter_config.json").is_file()  # for vLLM's LoRA serving


@pytest.mark.slow
def test_finetuned_model_loads_through_the_factory_and_answers_on_taxonomy(
    tiny_model: tuple[Path, dict[str, object]], snap: Snapshot, embedder: SentenceTransformerEmbedder
) -> None:
    out, _ = tiny_model
    backend = create_backend("embedded", model=str(out), n_threads=2)
    assert backend.info.name == "transformers"
    generator = CandidateGenerator(embedder, snap, build_index(embedder, _pool(100)))
    with shared_file("mwpd/dev.jsonl").open(encoding="utf-8") as fh:
        rows = [json.loads(line) for _, line in zip(range(3), fh, strict=False)]
    products = [Product(id=r["id"], title=r["title"] or "-", description=r["description"][:300]) for r in rows]
    validator = TagValidator(leaf_only=False)
    for mode in ("score", "generate"):
        tagger = Tagger(generator, backend, config=TaggerConfig(pipeline="rag", llm_mode=mode))  # type: ignore[arg-type]
        assert tagger.config.max_examples == 2  # the prompt profile of the manifest wins
        for result in tagger.tag_many(products):
            assert result.tags and validator.validate(snap, [result.tags[0].id]).ok
            assert result.evidence.llm.attempts >= 1 and not result.evidence.llm.fallback_used
    backend.close()


@pytest.mark.slow
def test_resumed_training_equals_uninterrupted(
    tiny_model: tuple[Path, dict[str, object]], tmp_path: Path, snap: Snapshot,
    embedder: SentenceTransformerEmbedder, base_cache: Path,
) -> None:
    from safetensors.numpy import load_file

    reference, manifest = tiny_model
    out = tmp_path / "model"

    def stop_at_3(p: Progress) -> None:
        if p.step == 3:  # the checkpoint of step 2 is on disk, step 3's work is lost
            raise _Interrupt

    with pytest.raises(_Interrupt):
        finetune(_pool(40), snap, embedder, out, JOB, cache_dir=base_cache, threads=2, progress=stop_at_3)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000002.pt"]
    resumed = finetune(_pool(40), snap, embedder, out, JOB, cache_dir=base_cache, threads=2)
    assert "resumed from step-0000002.pt" in (out / "train.log").read_text(encoding="utf-8")
    before, after = manifest["validation"], resumed["validation"]
    assert isinstance(before, list) and isinstance(after, list) and len(before) == len(after) == 1
    before, after = before[0], after[0]
    assert after["val_accuracy"] == before["val_accuracy"]
    assert after["val_nll"] == pytest.approx(before["val_nll"], abs=1e-4)
    a = load_file(str(reference / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert abs(a[key] - b[key]).max() < 1e-5, key


def test_transformers_backend_accepts_only_tags_schemas() -> None:
    from agent.llm import tags_schema
    from agent.llm.transformers_backend import allowed_values

    assert allowed_values(tags_schema(["B", "A", "B"])) == ["B", "A"]
    with pytest.raises(ValueError):
        allowed_values({"type": "object", "properties": {"name": {"type": "string"}}})


@pytest.mark.slow
def test_bf16_lora_keeps_fp32_adapters_and_merges_in_fp32(
    tiny_model: tuple[Path, dict[str, object]], tmp_path: Path, base_cache: Path
) -> None:
    """bf16 (1.6× the fp32 training speed on this CPU, docs/finetune.md): the frozen base in
    bf16, the adapters and their optimiser state in fp32, the merged model written in fp32
    with the trained delta in it."""
    import torch
    from safetensors.torch import load_file

    from agent.finetune.run import _items_from_file, resolve_base
    from agent.finetune.train import Trainer

    reference, _ = tiny_model
    train, _ = _items_from_file(reference / "dataset.jsonl")
    base_dir, _ = resolve_base("smollm2", base_cache)
    cfg = replace(JOB.train, dtype="bf16", max_steps=1, learning_rate=1e-2)
    trainer = Trainer(base_dir, tmp_path / "run", train[:2], [], cfg, threads=2)
    assert trainer.trainable and all(p.dtype == torch.float32 for p in trainer.trainable.values())
    frozen = [p for p in trainer.model.parameters() if not p.requires_grad]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
    loss, _ = trainer._answer_loss(trainer.train[:2])
    loss.backward()
    trainer.optimizer.step()
    assert torch.isfinite(loss)
    out = tmp_path / "model"
    trainer.save_model(out)
    merged = load_file(str(out / "model.safetensors"))
    base = load_file(str(base_dir / "model.safetensors"))
    assert all(v.dtype == torch.float32 for v in merged.values())
    changed = [k for k in merged if k in base and bool((merged[k] != base[k].float()).any())]
    assert changed and all(".layers.29." in k or ".layers.28." in k for k in changed)  # LoRA on the last 2


def test_blended_choice_follows_the_weight_and_breaks_ties_by_vote() -> None:
    from agent.finetune.blend import blended_choice

    vote, llm = [0.6, 0.3, 0.1], [0.1, 0.2, 0.7]
    assert blended_choice(vote, llm, 0.0) == 0  # the vote alone
    assert blended_choice(vote, llm, 1.0) == 2  # the LLM alone
    assert blended_choice(vote, llm, 0.5) == 2  # 0.35 / 0.25 / 0.40
    assert blended_choice(vote, llm, 0.4) == 0  # 0.40 / 0.26 / 0.34
    assert blended_choice([0.5, 0.5], [0.5, 0.5], 0.3) == 0  # a tie goes to the first best vote
    assert blended_choice([0.4, 0.6], [0.6, 0.4], 0.5) == 1  # ... to the higher vote


@pytest.mark.slow
def test_blend_weight_is_fitted_on_unseen_products_stored_and_used(
    tiny_model: tuple[Path, dict[str, object]], tmp_path: Path, snap: Snapshot,
    embedder: SentenceTransformerEmbedder,
) -> None:
    """``fit_model_blend`` on products the model was not trained on: the real model scores
    each once, the grid's accuracy at 0 is the vote's own, the winner is the best (smallest
    on ties), the manifest is rewritten with it, and a tagger on that model uses it unless
    its configuration sets a weight."""
    import shutil

    from agent.finetune import fit_model_blend
    from agent.finetune.blend import GRID
    from agent.llm.manifest import read_manifest

    reference, _ = tiny_model
    model = tmp_path / "model"
    shutil.copytree(reference, model)
    pool = _pool(200)  # the tiny model was trained on (most of) the first 40
    blend = fit_model_blend(model, pool, snap, embedder, n_items=80, seed=1)
    by_weight = {float(w): a for w, a in blend["accuracy_by_weight"].items()}
    assert sorted(by_weight) == list(GRID) and blend["n"] >= 30
    assert blend["accuracy"] == max(by_weight.values())
    assert blend["llm_weight"] == min(w for w, a in by_weight.items() if a == blend["accuracy"])
    assert blend["vote_accuracy"] == by_weight[0.0] and blend["llm_accuracy"] == by_weight[1.0]
    assert "not used in training" in blend["source"]
    assert (read_manifest(model) or {})["blend"] == blend

    backend = create_backend("embedded", model=str(model), n_threads=2)
    generator = CandidateGenerator(embedder, snap, build_index(embedder, pool))
    assert backend.info.blend_weight == blend["llm_weight"]
    assert Tagger(generator, backend, config=TaggerConfig(pipeline="rag")).llm_weight == blend["llm_weight"]
    assert Tagger(generator, backend, config=TaggerConfig(pipeline="rag", llm_weight=0.9)).llm_weight == 0.9
    backend.close()
    with pytest.raises(ValueError, match=r"training|usable"):
        fit_model_blend(model, _pool(40)[:1], snap, embedder)  # nothing unseen to fit on
