"""The model-free hashing embedder: deterministic, normalised, lexically sensible."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from retrieval import Embedder, HashingEmbedder, build_index
from tests.conftest import REPO
from tests.retrieval.conftest import TINY_EXAMPLES


def test_is_an_embedder_with_normalised_float32_vectors() -> None:
    emb = HashingEmbedder(dim=64)
    assert isinstance(emb, Embedder)
    vectors = emb.encode(["Cast iron skillet", "", "a"])
    assert vectors.shape == (3, 64) and vectors.dtype == np.float32
    norms = np.linalg.norm(vectors, axis=1)
    assert norms[0] == pytest.approx(1.0, abs=1e-5)
    assert norms[1] == 0.0  # an empty text stays a zero row, not NaN
    assert emb.encode([]).shape == (0, 64)


@pytest.mark.process
def test_same_vectors_in_another_process() -> None:
    """No hash randomisation: indexes and caches built in one process stay valid in the next."""
    code = (
        "from retrieval import HashingEmbedder; import sys; "
        "sys.stdout.write(HashingEmbedder().encode(['Wool hiking socks 3 pairs']).tobytes().hex())"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"}, cwd=str(REPO),
    ).stdout
    assert other == HashingEmbedder().encode(["Wool hiking socks 3 pairs"]).tobytes().hex()


def test_shared_words_rank_first() -> None:
    emb = HashingEmbedder()
    index = build_index(emb, TINY_EXAMPLES)
    for query, expected in [
        ("cast iron skillet with ceramic coating", "e6"),
        ("merino wool socks", "e4"),
        ("glass carafe filter coffee", "e8"),
        ("hooded sweatshirt", "e3"),
    ]:
        hits = index.search(emb.encode([query]), k=1)[0]
        assert hits[0].id == expected, (query, hits)


def test_name_identifies_the_vectors() -> None:
    assert HashingEmbedder(dim=128).name != HashingEmbedder(dim=256).name
    assert HashingEmbedder().name == HashingEmbedder().name
    with pytest.raises(ValueError):
        HashingEmbedder(dim=4)
