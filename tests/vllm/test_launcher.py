"""The vLLM launcher's command line, environment and failure messages (no vLLM started)."""

from __future__ import annotations

import json
import re
import shlex
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
    check_extra_args,
    find_python,
    tagsmith_settings,
    vllm_version,
)
from tests.conftest import REPO
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


@pytest.mark.parametrize("args", [
    ("--api-server-count", "4"), ("--api-server-count=2",), ("-asc", "3"), ("--api_server_count", "2"),
    ("--headless",), ("--data-parallel-multi-port-external-lb",), ("--grpc",),
])
def test_flags_only_vllm_serve_acts_on_are_refused_before_vllm_starts(tmp_path: Path, args: tuple[str, ...]) -> None:
    server = VLLMServer(VLLMConfig(model_dir=tmp_path, extra_args=("--data-parallel-size", "2", *args)),
                        python=tmp_path / "no-such-python")
    with pytest.raises(VLLMError, match=r"vllm serve.*endpoint pool"):
        server.start()  # refused before the model directory or the interpreter is looked at
    assert server.proc is None


def test_flags_the_launcher_entry_point_honours_pass() -> None:
    check_extra_args(("--data-parallel-size", "4", "--api-server-count", "1", "-tp", "1", "--max-num-seqs", "64"))
    check_extra_args(("--api-server-count=1", "--served-model-name", "headless"))  # a value, not the flag


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


#: flags docs/vllm.md names that are tagsmith's (``tagsmith llm serve``/``export-hf``, pytest)
TAGSMITH_FLAGS = {"--", "--force", "--gguf", "--python", "--start-timeout", "--model-dir", "--out", "-m"}

#: run by .venv-vllm's interpreter: the argument parser of ``vllm serve`` and of the module
#: entry point the launcher runs (both are ``make_arg_parser``); parses the launcher's command
#: line in full and looks each documented flag up
_PARSE = """
import json, sys
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser
job = json.load(sys.stdin)
parser = make_arg_parser(FlexibleArgumentParser())
known = set(parser._option_string_actions)
args = parser.parse_args(job["argv"])  # exits 2 on an unknown flag or a bad value
json.dump({"unknown": sorted(set(job["flags"]) - known), "model": args.model,
           "structured_outputs": str(args.structured_outputs_config)}, sys.stdout)
"""


def documented_vllm_flags(text: str) -> set[str]:
    """Every flag docs/vllm.md names: inline code, and in shell blocks what follows a ``--``
    (passed to vLLM) or belongs to a ``vllm serve`` command."""
    flags = set(re.findall(r"`(-[-a-z0-9]+)", text))
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        for command in block.replace("\\\n", " ").splitlines():
            words = shlex.split(command, comments=True)
            if "vllm" in words[:1] and "serve" in words[1:2]:
                flags.update(w.split("=")[0] for w in words if w.startswith("-"))
            elif "--" in words:
                flags.update(w.split("=")[0] for w in words[words.index("--") + 1:] if w.startswith("-"))
    return flags - TAGSMITH_FLAGS


def test_documented_flags_are_found_in_the_page() -> None:
    flags = documented_vllm_flags((REPO / "docs" / "vllm.md").read_text(encoding="utf-8"))
    # the extraction sees inline code, pass-through flags and `vllm serve` commands
    assert {"-dp", "--data-parallel-rank", "--headless", "--api-key", "--gpu-memory-utilization",
            "--enable-prefix-caching", "--structured-outputs-config"} <= flags
    assert not flags & TAGSMITH_FLAGS


@pytest.mark.vllm
@pytest.mark.timeout(180)
def test_documented_flags_exist_in_the_installed_vllm(vllm_python: Path, tmp_path: Path) -> None:
    """The launcher's command line parses, and every flag docs/vllm.md documents exists, in
    the installed vLLM's own parser (a flag renamed or retired by an upgrade fails here)."""
    argv = build_argv(VLLMConfig(model_dir=tmp_path, extra_args=("--data-parallel-size", "2")), vllm_python)
    flags = documented_vllm_flags((REPO / "docs" / "vllm.md").read_text(encoding="utf-8"))
    done = subprocess.run(
        [str(vllm_python), "-c", _PARSE], input=json.dumps({"argv": argv[3:], "flags": sorted(flags)}),
        capture_output=True, text=True, timeout=150, env=build_env(VLLMConfig(model_dir=tmp_path)),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout)
    assert got["unknown"] == [], f"flags docs/vllm.md names that vLLM does not know: {got['unknown']}"
    assert got["model"] == str(tmp_path)
    assert "backend='xgrammar'" in got["structured_outputs"] and "disable_any_whitespace=True" in got["structured_outputs"]
