"""`tagsmith llm export-hf`: a deterministic, verified Hugging Face export of the GGUF model
(no vLLM needed: these run wherever the main environment is installed)."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import pytest

from agent.llm.hf_export import MANIFEST, export_hf, read_manifest, verify_export
from agent.llm.model_files import SMOLLM2_FILE, default_gguf_path
from retrieval.durable import sha256_file
from tests.vllm.conftest import TAGSMITH


def _safetensors_header(path: Path) -> dict[str, object]:
    with path.open("rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header: dict[str, object] = json.loads(fh.read(size))
    return header


def test_export_is_a_complete_checkpoint_with_a_manifest(hf_model_dir: Path) -> None:
    source = default_gguf_path()
    assert source is not None
    manifest = read_manifest(hf_model_dir)
    assert manifest is not None
    assert manifest["source"] == {"file": SMOLLM2_FILE, "sha256": sha256_file(source), "bytes": source.stat().st_size}
    assert manifest["model"] == "smollm2" and manifest["dtype"] == "bfloat16"
    assert set(manifest["versions"]) >= {"transformers", "gguf", "torch"}
    names = set(manifest["files"])
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"} <= names
    assert verify_export(hf_model_dir)
    config = json.loads((hf_model_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["dtype"] == "bfloat16"
    assert "quantization_config" not in config  # the weights are dequantized
    header = _safetensors_header(hf_model_dir / "model.safetensors")
    assert header.pop("__metadata__") == {"format": "pt"}  # no timestamps or paths in there
    assert {t["dtype"] for t in header.values()} == {"BF16"}  # type: ignore[index]
    # no host paths leak into the files (they would break byte-for-byte determinism)
    for name in names - {"model.safetensors"}:
        assert str(hf_model_dir.parent) not in (hf_model_dir / name).read_text(errors="replace")


def test_export_is_deterministic_atomic_and_reused(hf_model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "again").mkdir()  # an empty directory is fine to export into
    again = export_hf(tmp_path / "again")  # a second, independent conversion
    first, second = read_manifest(hf_model_dir), read_manifest(again)
    assert first is not None and second is not None
    assert first["files"] == second["files"]  # the same bytes, file by file
    assert (hf_model_dir / MANIFEST).read_bytes() == (again / MANIFEST).read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["again"]  # no temporary directory left

    stamp = (again / "model.safetensors").stat().st_mtime_ns
    assert export_hf(again) == again  # same source: the verified export is reused as is
    assert (again / "model.safetensors").stat().st_mtime_ns == stamp

    (again / "config.json").write_text("{}")  # damaged: not reused, refused without force
    assert not verify_export(again)
    with pytest.raises(FileExistsError):
        export_hf(again)
    assert verify_export(export_hf(again, force=True))


@pytest.mark.process
def test_cli_export_refuses_a_foreign_directory_and_names_the_serve_command(tmp_path: Path, hf_model_dir: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    done = subprocess.run([TAGSMITH, "llm", "export-hf", "--out", str(foreign)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "use force" in done.stderr
    assert (foreign / "notes.txt").read_text() == "keep me"

    done = subprocess.run([TAGSMITH, "llm", "export-hf", "--out", str(hf_model_dir)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["out"] == str(hf_model_dir) and out["dtype"] == "bfloat16"
    assert out["serve"] == f"tagsmith llm serve --model-dir {hf_model_dir}"
