"""The sentence-transformers model run by ONNX Runtime or OpenVINO instead of PyTorch.

The graph is exported **locally** from the packaged weights (``torch.onnx.export``, no model
hub, no ``optimum``: its ONNX extra pins transformers 4.x), transformer + mean pooling + L2
normalisation in one graph, and cached beside the model's other caches under a name made
of the weights' fingerprint, the sequence length and the quantisation. ``int8`` is ONNX
Runtime's dynamic quantisation of that graph (weights int8, activations quantised per
batch). Exports are written atomically (:mod:`retrieval.durable`); a concurrent exporter
only wastes work.

Optional dependencies (``pip install 'tagsmith[onnx]'``): ``onnxruntime`` and ``onnx``
(export and quantisation), ``openvino`` for that runtime.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from retrieval.durable import atomic_path
from retrieval.errors import EmbedderError

Runtime = Literal["torch", "onnx", "openvino"]
RUNTIMES: tuple[Runtime, ...] = ("torch", "onnx", "openvino")
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: bump when the exported graph changes: old exports are then not reused
EXPORT_FORMAT = 1
Encoder = Callable[[dict[str, NDArray[np.int64]]], NDArray[np.float32]]


#: float32 runtimes, fastest first on 2 CPU cores (docs/benchmarks.md, "Embedding throughput")
FLOAT_RUNTIMES_BY_SPEED: tuple[Runtime, ...] = ("openvino", "onnx", "torch")


def installed(runtime: Runtime) -> bool:
    import importlib.util

    if runtime == "torch":
        return True
    needs = ["onnxruntime", "onnx"] + (["openvino"] if runtime == "openvino" else [])
    return all(importlib.util.find_spec(m) is not None for m in needs)


def fastest_runtime(device: str | None) -> Runtime:
    """The fastest installed float32 runtime for ``device`` (the exports are CPU-only: torch
    on a GPU, or when the device is unset and one is visible)."""
    if device is not None and device != "cpu":
        return "torch"
    if device is None:
        import torch

        if torch.cuda.is_available():
            return "torch"
    return next(r for r in FLOAT_RUNTIMES_BY_SPEED if installed(r))


def default_export_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tagsmith" / "onnx"


def export_path(export_dir: Path, name: str, quantize: str) -> Path:
    """Where the export of the model named ``name`` (label@fingerprint+seqN) lives."""
    safe = "".join(c if c.isalnum() or c in "-_.+@" else "_" for c in name)
    suffix = ".int8" if quantize == "int8" else ""
    return export_dir / f"{safe}.v{EXPORT_FORMAT}{suffix}.onnx"


def export_onnx(st: Any, path: Path) -> Path:
    """Export the sentence-transformers model ``st`` (transformer, mean pooling, normalise)
    to ``path`` in float32; nothing happens when it exists."""
    if path.is_file():
        return path
    import torch

    transformer = st[0].auto_model

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, dim=-1)

    sample = st.tokenizer(["a product", "another product title"], padding=True, return_tensors="pt")
    args = tuple(sample[k] if k in sample else torch.zeros_like(sample["input_ids"]) for k in INPUTS)
    axes = {k: {0: "batch", 1: "tokens"} for k in INPUTS} | {"embedding": {0: "batch"}}
    with atomic_path(path) as tmp, torch.inference_mode():
        torch.onnx.export(  # the TorchScript exporter: no onnxscript needed, one file out
            Pooled().eval(), args, str(tmp), input_names=list(INPUTS), output_names=["embedding"],
            dynamic_axes=axes, opset_version=17, dynamo=False,
        )
    return path


def quantize_onnx(source: Path, path: Path) -> Path:
    """ONNX Runtime's dynamic int8 quantisation of ``source`` into ``path`` (kept if there)."""
    if path.is_file():
        return path
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with atomic_path(path) as tmp:
        quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8)
    return path


def load_encoder(
    st: Any, name: str, *, runtime: Runtime, quantize: str, export_dir: Path | None, num_threads: int | None
) -> Encoder:
    """A function from tokenizer output (numpy int64) to normalised vectors, running the
    export of ``st`` (made now if missing) on ``runtime``."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise EmbedderError(
            f"the {runtime} embedder runtime needs onnxruntime and onnx: pip install 'tagsmith[onnx]'"
        ) from exc
    root = export_dir or default_export_dir()
    try:
        path = export_onnx(st, export_path(root, name, "none"))
        if quantize == "int8":
            path = quantize_onnx(path, export_path(root, name, "int8"))
    except (OSError, RuntimeError, ImportError) as exc:
        raise EmbedderError(f"exporting {name} to ONNX failed: {exc}") from exc
    threads = num_threads or 0  # 0: the runtime's default (all cores)
    if runtime == "onnx":
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def run_ort(batch: dict[str, NDArray[np.int64]]) -> NDArray[np.float32]:
            return np.asarray(session.run(None, batch)[0], dtype=np.float32)

        return run_ort
    try:
        import openvino as ov
    except ImportError as exc:
        raise EmbedderError("the openvino embedder runtime needs openvino: pip install 'tagsmith[openvino]'") from exc
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}  # not bf16 where the CPU has it
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(str(path), "CPU", config)

    def run_ov(batch: dict[str, NDArray[np.int64]]) -> NDArray[np.float32]:
        return np.asarray(compiled(batch)[0], dtype=np.float32)

    return run_ov


def encode_batches(
    tokenizer: Any, encoder: Encoder, texts: Sequence[str], *, batch_size: int, max_seq_length: int, dim: int
) -> NDArray[np.float32]:
    """Encode ``texts`` in batches of similar length (less padding), in input order."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                        max_length=max_seq_length, return_tensors="np")
        batch = {k: np.asarray(enc[k], dtype=np.int64) for k in INPUTS if k in enc}
        if "token_type_ids" not in batch:
            batch["token_type_ids"] = np.zeros_like(batch["input_ids"])
        out[idx] = encoder(batch)
    return out
