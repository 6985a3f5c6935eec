"""Text embedders: a small protocol and the sentence-transformers implementation.

Vectors are float32 and L2-normalised, so inner product == cosine similarity everywhere
(FAISS ``METRIC_INNER_PRODUCT``). An embedder's ``name`` identifies the vectors it makes —
model, weights fingerprint and every option that changes them — because the name is what
the embedding cache and the index manifests are keyed on.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from retrieval.errors import EmbedderError
from retrieval.onnx_runtime import RUNTIMES, Encoder, Runtime, encode_batches, load_encoder
from retrieval.packaged import EMBEDDER_INSTALL, default_embedder_dir
from retrieval.readability import uncovered_share, vocabulary_scripts

Vectors = NDArray[np.float32]
Quantize = Literal["none", "int8"]

#: name of the packaged default, independent of where pip put it
DEFAULT_MODEL_LABEL = "all-MiniLM-L6-v2"
#: MiniLM was trained on 128-token inputs; beyond that the quality gain is small while
#: the cost grows (measured: 256 → 128 tokens is 1.5x faster, see docs/benchmarks.md)
DEFAULT_MAX_SEQ_LENGTH = 128


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> Vectors: ...

    def unreadable(self, texts: Sequence[str]) -> list[float]:
        """Per text, the share (0..1) of its letters this embedder cannot read: letters of a
        script it does not cover, or that its tokenizer maps to unknown tokens. A text
        mostly unreadable (above :data:`retrieval.readability.UNREADABLE_SHARE`) gets a
        vector that says nothing about it, and its answer goes to review."""
        ...


def normalize(vectors: NDArray[Any]) -> Vectors:
    """Row-wise L2 normalisation (zero rows stay zero instead of becoming NaN)."""
    out = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(out / norms, dtype=np.float32)


def _fingerprint(model_dir: Path) -> str:
    """A short content hash of the model's config and weights.

    Hashing the weights costs ~0.2 s for MiniLM (90 MB) and makes the name honest: two
    directories with the same weights share caches and indexes, a fine-tuned copy does not.
    """
    digest = hashlib.sha256()
    for path in sorted(model_dir.rglob("*")):
        if path.is_file() and (path.suffix in {".json", ".safetensors", ".bin", ".txt"}):
            digest.update(str(path.relative_to(model_dir)).encode())
            with path.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:10]


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local directory (never from a hub).

    ``max_seq_length`` truncates in tokens (default 128, see module constant);
    ``quantize="int8"`` applies PyTorch dynamic int8 quantisation to the linear layers on
    CPU (~2x faster, vectors differ slightly, so the name changes and caches/indexes built
    with the float model are not reused).

    ``runtime``: who runs the model on CPU: ``torch`` (sentence-transformers itself), or
    ``onnx`` / ``openvino`` on a graph exported locally from the same weights
    (:mod:`retrieval.onnx_runtime`, cached under ``export_dir``). In float32 they make the
    same vectors as torch up to float rounding (the test holds them to cosine ≥ 0.99999, as a
    GPU's differ from a CPU's), so the name does not change and indexes and caches are
    shared; their ``int8`` is ONNX Runtime's quantisation, with a name of its own.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        batch_size: int = 64,
        device: str | None = None,
        max_seq_length: int | None = DEFAULT_MAX_SEQ_LENGTH,
        quantize: Quantize = "none",
        num_threads: int | None = None,
        runtime: Runtime = "torch",
        export_dir: Path | None = None,
    ) -> None:
        if model is None:
            model_dir = default_embedder_dir()
            if model_dir is None:
                raise EmbedderError(f"the default embedder is not installed: {EMBEDDER_INSTALL}")
            label = DEFAULT_MODEL_LABEL
        else:
            model_dir = Path(model).expanduser()
            label = model_dir.name
        if not (model_dir / "config.json").is_file() and not (model_dir / "modules.json").is_file():
            raise EmbedderError(
                f"{model_dir} is not a sentence-transformers model directory "
                "(no config.json/modules.json); models are never downloaded from a hub"
            )
        if batch_size < 1:
            raise EmbedderError("batch_size must be >= 1")
        if quantize not in ("none", "int8"):
            raise EmbedderError(f"unknown quantize mode {quantize!r}")
        if runtime not in RUNTIMES:
            raise EmbedderError(f"unknown embedder runtime {runtime!r} (expected one of {', '.join(RUNTIMES)})")
        # offline by construction: a local path never triggers a hub lookup, and these
        # variables make any accidental one fail fast instead of hanging on the network
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        # no "Loading weights" bar on every start: the CLI reports what actually takes time
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

        import torch
        from sentence_transformers import SentenceTransformer

        if num_threads is not None:
            torch.set_num_threads(num_threads)
        self.device = device or _default_device()
        if (quantize == "int8" or runtime != "torch") and self.device != "cpu":
            raise EmbedderError("int8 dynamic quantisation and the onnx/openvino runtimes are CPU options")
        try:
            st = SentenceTransformer(str(model_dir), device=self.device, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise EmbedderError(f"cannot load sentence-transformers model {model_dir}: {exc}") from exc
        if max_seq_length is not None:
            st.max_seq_length = min(max_seq_length, st.max_seq_length or max_seq_length)
        if quantize == "int8" and runtime == "torch":
            st = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
                st, {torch.nn.Linear}, dtype=torch.qint8
            )
        # renamed in sentence-transformers 6; the old name still works on 3.x-5.x
        get_dim = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        dim = get_dim()
        if not isinstance(dim, int):
            raise EmbedderError(f"{model_dir}: the model does not declare its embedding dimension")
        self._model = st
        self._dim = dim
        self.model_dir = model_dir
        self.batch_size = batch_size
        self.max_seq_length = int(st.max_seq_length or 0)
        self.quantize = quantize
        self.runtime: Runtime = runtime
        suffix = f"+seq{self.max_seq_length}"
        float_name = f"{label}@{_fingerprint(model_dir)}{suffix}"
        if quantize == "int8":
            quantized = "+int8" if runtime == "torch" else "+ort-int8"
        self._name = float_name + (quantized if quantize == "int8" else "")
        self._encoder: Encoder | None = None
        if runtime != "torch":
            self._encoder = load_encoder(
                st, float_name, runtime=runtime, quantize=quantize, export_dir=export_dir,
                num_threads=num_threads,
            )
        tokenizer = getattr(st, "tokenizer", None)
        self._tokenizer = tokenizer
        self._unk_id: int | None = getattr(tokenizer, "unk_token_id", None)
        vocab = tokenizer.get_vocab() if tokenizer is not None else {}
        #: the scripts this model's vocabulary covers (the packaged MiniLM: Latin only)
        self.scripts: frozenset[str] | None = vocabulary_scripts(vocab) if vocab else None

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        if self._encoder is not None:
            return normalize(encode_batches(
                self._tokenizer, self._encoder, texts, batch_size=self.batch_size,
                max_seq_length=self.max_seq_length, dim=self._dim,
            ))
        import torch

        with torch.inference_mode():
            out = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return normalize(np.asarray(out))

    def unreadable(self, texts: Sequence[str]) -> list[float]:
        """The larger of the share of letters in scripts the vocabulary does not cover and
        the share of the text's tokens that are the tokenizer's unknown token."""
        out = []
        for text in texts:
            share = uncovered_share(text, covered=self.scripts)
            if self._tokenizer is not None and self._unk_id is not None and text.strip():
                ids = self._tokenizer(text, add_special_tokens=False, truncation=True,
                                      max_length=max(self.max_seq_length, 1))["input_ids"]
                if ids:
                    share = max(share, sum(1 for i in ids if i == self._unk_id) / len(ids))
            out.append(share)
        return out

    def __repr__(self) -> str:
        return (f"<SentenceTransformerEmbedder {self._name} dim={self._dim} device={self.device} "
                f"runtime={self.runtime}>")

