"""The vLLM launcher's command line, environment and failure messages (no vLLM started)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from serve.vllm_launcher import (
    INSTALL_HINT,
    VLLMConfig,
    VLLMError,
    VLLMServer,
    build_argv,
    build_env,
    find_python,
    tagsmith_settings,
    vllm_version,
)
from tests.vllm.conftest import TAGSMITH


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_argv_has_the_flags_tagsmith_needs(tmp_path: Path) -> None:
    config = VLLMConfig(model_dir=tmp_path, port=8123, extra_args=("--max-num-seqs", "64"))
    argv = build_argv(config, Path("/opt/venv/bin/python"))
    assert argv[:3] == ["/opt/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert _flag(argv, "--model") == str(tmp_path)
    assert _flag(argv, "--served-model-name") == "tagsmith"
    assert _flag(argv, "--host") == "127.0.0.1" and _flag(argv, "--port") == "8123"
    assert _flag(argv, "--max-model-len") == "2048"
    assert "--enable-prefix-caching" in argv
    assert json.loads(_flag(argv, "--structured-outputs-config")) == {
        "backend": "xgrammar", "disable_any_whitespace": True,
    }
    assert argv[-2:] == ["--max-num-seqs", "64"]  # pass-through comes last: it can override


def test_env_is_offline_and_cpu_friendly_but_keeps_operator_choices(tmp_path: Path) -> None:
    config = VLLMConfig(model_dir=tmp_path, cache_root=tmp_path / "cache")
    env = build_env(config, {"PATH": "/bin", "VLLM_CPU_KVCACHE_SPACE": "8"})
    assert env["HF_HUB_OFFLINE"] == "1" and env["VLLM_CACHE_ROOT"] == str(tmp_path / "cache")
    assert env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "8" and env["PATH"] == "/bin"
    assert build_env(config, {})["VLLM_CPU_KVCACHE_SPACE"] == "2"


def test_settings_point_tagsmith_at_the_server(tmp_path: Path) -> None:
    assert tagsmith_settings(VLLMConfig(model_dir=tmp_path, port=9000)) == {
        "TAGSMITH_LLM__BACKEND": "openai",
        "TAGSMITH_LLM__BASE_URL": "http://127.0.0.1:9000/v1",
        "TAGSMITH_LLM__MODEL": "tagsmith",
        "TAGSMITH_LLM__STRUCTURED_OUTPUT": "json_schema",
        "TAGSMITH_LLM__MODEL_DIR": str(tmp_path),
    }
    # a wildcard bind is reached on loopback from this host
    assert VLLMConfig(model_dir=tmp_path, host="0.0.0.0", port=9).base_url == "http://127.0.0.1:9"


def test_python_choice_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_python("/x/python", {"TAGSMITH_VLLM_PYTHON": "/y/python"}) == Path("/x/python")
    assert find_python(None, {"TAGSMITH_VLLM_PYTHON": "/y/python"}) == Path("/y/python")
    monkeypatch.chdir(tmp_path)
    venv_python = tmp_path / ".venv-vllm" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.touch()
    assert find_python(None, {}) == venv_python


def test_missing_vllm_names_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(VLLMError, match=r"install-vllm\.sh"):
        vllm_version(tmp_path / "no-such-python")
    with pytest.raises(VLLMError, match=r"not importable.*install-vllm\.sh"):
        vllm_version(Path(sys.executable))  # the main environment has no vLLM, on purpose


def test_server_refuses_a_directory_that_is_not_an_export(tmp_path: Path) -> None:
    server = VLLMServer(VLLMConfig(model_dir=tmp_path), python=Path(sys.executable))
    with pytest.raises(VLLMError, match="tagsmith llm export-hf"):
        server.start()
    assert server.proc is None


@pytest.mark.process
def test_cli_serve_fails_cleanly_without_vllm(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    done = subprocess.run(
        [TAGSMITH, "llm", "serve", "--model-dir", str(tmp_path), "--python", sys.executable],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1
    assert "not importable" in done.stderr and "install-vllm.sh" in done.stderr
    assert "Traceback" not in done.stderr
    assert INSTALL_HINT.split()[0] in done.stderr
