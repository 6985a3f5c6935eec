"""The packaged MiniLM on ONNX Runtime / OpenVINO (exported here, from the packaged weights):
the float32 graph makes torch's vectors, so it keeps torch's name; int8 gets a name of its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval import SentenceTransformerEmbedder
from retrieval.errors import EmbedderError

pytestmark = pytest.mark.model

TEXTS = ["Red cotton t-shirt, size M", "Apple iPhone 12 128GB black, sealed", "dog chew toy " * 60, "x", ""]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def torch_vectors() -> tuple[str, np.ndarray]:
    emb = SentenceTransformerEmbedder(batch_size=2)
    return emb.name, emb.encode(TEXTS)


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_float32_runtimes_make_torchs_vectors_under_torchs_name(
    runtime: str, export_dir: Path, torch_vectors: tuple[str, np.ndarray]
) -> None:
    if runtime == "openvino":
        pytest.importorskip("openvino")
    name, expected = torch_vectors
    emb = SentenceTransformerEmbedder(runtime=runtime, batch_size=2, export_dir=export_dir)  # type: ignore[arg-type]
    got = emb.encode(TEXTS)
    assert emb.name == name and got.shape == expected.shape and got.dtype == np.float32
    assert np.min(np.sum(got * expected, axis=1)) >= 0.99999
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert emb.encode([]).shape == (0, emb.dim)


def test_int8_has_its_own_name_and_close_vectors_and_the_export_is_reused(
    export_dir: Path, torch_vectors: tuple[str, np.ndarray]
) -> None:
    name, expected = torch_vectors
    emb = SentenceTransformerEmbedder(runtime="onnx", quantize="int8", export_dir=export_dir)
    assert emb.name == name + "+ort-int8"
    cos = np.sum(emb.encode(TEXTS[:4]) * expected[:4], axis=1)
    assert np.all(cos > 0.8) and np.all(cos < 0.9999)  # quantised: close, not equal
    files = sorted(export_dir.iterdir())
    assert [f.suffix for f in files] == [".onnx", ".onnx"] and not any(f.name.startswith(".") for f in files)
    stamps = [f.stat().st_mtime_ns for f in files]
    SentenceTransformerEmbedder(runtime="onnx", quantize="int8", export_dir=export_dir)
    assert [f.stat().st_mtime_ns for f in sorted(export_dir.iterdir())] == stamps  # not exported again


def test_unknown_runtime_and_gpu_runtimes_are_refused() -> None:
    with pytest.raises(EmbedderError, match="unknown embedder runtime"):
        SentenceTransformerEmbedder(runtime="tensorrt")  # type: ignore[arg-type]
