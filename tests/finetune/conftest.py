"""Fixtures shared by the fine-tuning tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import linked_copy


@pytest.fixture(scope="module")
def base_cache(tmp_path_factory: pytest.TempPathFactory, hf_model_dir: Path) -> Path:
    """A models cache for ``finetune(cache_dir=...)`` whose base export (``base-smollm2``, what
    ``resolve_base`` looks for) links the session's export (``hf_model_dir``) instead of
    converting the GGUF again per module; ``export_hf`` verifies every file's hash on reuse."""
    cache = tmp_path_factory.mktemp("models")
    linked_copy(hf_model_dir, cache / "base-smollm2")
    return cache
