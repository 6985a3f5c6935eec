"""Which dtype to train in on this machine.

bf16 halves the memory traffic of the frozen base and made LoRA steps 1.6x faster than fp32
on a CPU with AVX-512 BF16 (docs/finetune.md); CUDA GPUs from Ampere on, x86 CPUs with AVX-512
BF16 or AMX, and Arm CPUs with the BF16 extension compute in it natively. Without it torch
emulates bf16 and training gets *much* slower: on a 2-core AMD EPYC with AVX2 only, an 8-prompt
LoRA step took 114.8 s in bf16 against 10.3 s in fp32 (11x). So ``--dtype auto`` picks bf16 only where it is
native, and an explicit bf16 without it is warned about.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

DTypeChoice = Literal["auto", "fp32", "bf16"]

# /proc/cpuinfo flag names: x86 ("flags") and Arm ("Features")
_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU advertises bf16 arithmetic; ``cpuinfo`` is /proc/cpuinfo's text
    (read when not given; a system without it, e.g. macOS, counts as no)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features") and _BF16_CPU_FLAGS & set(value.split()):
            return True
    return False


def native_bf16() -> bool:
    """bf16 is native on the device training will run on (the GPU when torch sees one)."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    return cpu_has_native_bf16()


def resolve_dtype(
    requested: DTypeChoice, method: str, *, native: bool
) -> tuple[Literal["fp32", "bf16"], str | None]:
    """The dtype to train in, and a warning to show (or None).

    ``auto``: bf16 for LoRA where bf16 is native, else fp32. Full fine-tuning stays fp32 under
    ``auto``: its trainable weights would be bf16 too, and small updates round away.
    """
    if requested == "auto":
        return ("bf16" if native and method == "lora" else "fp32"), None
    if requested == "bf16" and not native:
        return "bf16", (
            "--dtype bf16: this machine has no native bf16 arithmetic (AVX-512 BF16/AMX, Arm "
            "BF16 or a bf16 GPU), so torch emulates it and training runs several times slower "
            "than fp32 (11x measured on an AVX2 CPU); use --dtype fp32 or auto"
        )
    return requested, None
