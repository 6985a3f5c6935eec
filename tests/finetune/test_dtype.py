"""``--dtype auto``: bf16 only where the hardware computes in bf16 natively.

Emulated bf16 made LoRA steps 11x slower than fp32 on an AVX2-only CPU (docs/finetune.md),
so the default must not pick it there, and an explicit request must be warned about. The CLI
run is real: SmolLM2, the packaged embedder, 30 MWPD products, one step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.finetune.hardware import cpu_has_native_bf16, native_bf16, resolve_dtype
from agent.llm.manifest import MANIFEST_FILE
from tests.conftest import shared_file
from tests.test_cli_foundation import run

# trimmed from real /proc/cpuinfo files
ZEN3 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma bmi2 sha_ni\n"
GENOA = "processor\t: 0\nflags\t\t: avx2 avx512f avx512_bf16 avx512_vnni\n"
SAPPHIRE_RAPIDS = "flags\t\t: avx2 avx512f amx_tile amx_bf16 amx_int8\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\nCPU implementer\t: 0x41\n"
GRAVITON2 = "processor\t: 0\nFeatures\t: fp asimd asimddp\n"


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [(ZEN3, False), (GENOA, True), (SAPPHIRE_RAPIDS, True), (GRAVITON3, True), (GRAVITON2, False), ("", False)],
)
def test_cpu_bf16_is_read_from_the_cpu_flags(cpuinfo: str, native: bool) -> None:
    assert cpu_has_native_bf16(cpuinfo) is native


def test_a_flag_in_another_field_does_not_count() -> None:
    assert not cpu_has_native_bf16("model name\t: bf16 avx512_bf16 marketing\nflags\t: avx2\n")


def test_auto_picks_bf16_only_for_lora_on_native_hardware() -> None:
    assert resolve_dtype("auto", "lora", native=True) == ("bf16", None)
    assert resolve_dtype("auto", "lora", native=False) == ("fp32", None)
    assert resolve_dtype("auto", "full", native=True) == ("fp32", None)
    assert resolve_dtype("fp32", "lora", native=True) == ("fp32", None)
    assert resolve_dtype("bf16", "lora", native=True) == ("bf16", None)


def test_explicit_bf16_without_native_support_is_kept_but_warned_about() -> None:
    dtype, warning = resolve_dtype("bf16", "lora", native=False)
    assert dtype == "bf16"
    assert warning is not None and "--dtype fp32 or auto" in warning


@pytest.mark.process
def test_cli_rejects_an_unknown_dtype(tmp_path: Path) -> None:
    out = run(
        "finetune", "--examples", str(shared_file("mwpd/pool.jsonl")),
        "--taxonomy", str(shared_file("mwpd/taxonomy.json")), "--out", str(tmp_path / "m"), "--dtype", "fp16",
    )
    assert out.returncode != 0
    assert "--dtype must be auto, fp32 or bf16" in out.stdout + out.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_cli_auto_dtype_trains_in_what_the_hardware_supports(tmp_path: Path) -> None:
    examples = tmp_path / "pool.jsonl"
    with shared_file("mwpd/pool.jsonl").open(encoding="utf-8") as fh:
        examples.write_text("".join(line for _, line in zip(range(30), fh, strict=False)), encoding="utf-8")
    model = tmp_path / "m"
    out = run(
        "finetune", "--examples", str(examples), "--taxonomy", str(shared_file("mwpd/taxonomy.json")),
        "--out", str(model), "--lora-layers", "1", "--max-steps", "1", "--batch-size", "2",
        "--val-fraction", "0", "--max-val", "0", "--lexical-folds", "0", "--threads", "2",
        env={"TAGSMITH_DATA_DIR": str(tmp_path / "data")},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    manifest = json.loads((model / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert manifest["hyperparameters"]["dtype"] == ("bf16" if native_bf16() else "fp32")
    assert "no native bf16" not in out.stdout + out.stderr
