"""``tagsmith doctor`` shows which model is configured and what its manifest says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.llm.manifest import MANIFEST_FILE, MANIFEST_FORMAT
from tests.test_cli_foundation import run


@pytest.mark.process
def test_doctor_shows_the_finetuned_model_and_its_manifest(tmp_path: Path) -> None:
    model = tmp_path / "ft"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    (model / "model.safetensors").write_bytes(b"")  # --skip-generation: never loaded
    manifest = {
        "format": MANIFEST_FORMAT, "kind": "fine-tuned",
        "base": {"name": "smollm2", "sha256": "ab" * 32},
        "data": {"sha256": "cd" * 32, "examples": 10012, "train_items": 9000},
        "taxonomy": {"version": 3, "sha256": "ef" * 32},
        "hyperparameters": {"method": "lora", "learning_rate": 0.0005, "epochs": 1, "batch_size": 8},
        "validation": [{"epoch": 1, "val_accuracy": 0.93, "val_n": 200}],
        "validation_vote_top1": 0.9, "prompt": {"max_examples": 2},
        "blend": {"llm_weight": 0.15, "n": 384, "source": "the validation split", "accuracy": 0.901,
                  "vote_accuracy": 0.896},
    }
    (model / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    out = run("doctor", "--skip-generation", env={"TAGSMITH_LLM__MODEL": str(model)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert str(model) in out.stdout
    assert "fine-tuned (runtime: transformers)" in out.stdout
    assert "smollm2 sha256 abababab" in out.stdout
    assert "accuracy 0.93 on 200 held-out" in out.stdout
    assert "0.15 fitted on 384 products" in out.stdout
