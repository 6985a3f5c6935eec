"""``tagsmith doctor``: is this installation usable? Exit 0 only when the embedded default works."""

from __future__ import annotations

import importlib.metadata
import platform
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from serve.cli._common import console, settings

DOCTOR_CHOICES = [f"T{i:03d}" for i in range(1, 21)]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _gpu() -> str:
    try:
        import torch
    except ImportError:
        return "torch not installed"
    if torch.cuda.is_available():
        return f"yes: {torch.cuda.get_device_name(0)}"
    return "no (CPU only)"


def _constrained_check(backend: Any) -> tuple[bool, str]:
    from agent.llm import ChatMessage, LLMError, tags_schema

    messages = [
        ChatMessage("system", "Answer with the id of the best tag."),
        ChatMessage("user", "Product: red cotton t-shirt. Tags: " + ", ".join(DOCTOR_CHOICES)),
    ]
    start = time.perf_counter()
    try:
        gen = backend.generate(messages, tags_schema(DOCTOR_CHOICES), max_tokens=24)
    except LLMError as exc:
        return False, f"failed: {exc}"
    ms = (time.perf_counter() - start) * 1000
    ok = (
        isinstance(gen.parsed, dict)
        and isinstance(gen.parsed.get("tags"), list)
        and bool(gen.parsed["tags"])
        and all(t in DOCTOR_CHOICES for t in gen.parsed["tags"])
    )
    verdict = "ok" if ok else "OUTPUT OFF-SCHEMA"
    return ok, f"{verdict}: {gen.text!r} in {ms:.0f} ms"


def doctor(
    skip_generation: Annotated[
        bool, typer.Option("--skip-generation", help="do not load the model")
    ] = False,
) -> None:
    from agent.llm import LLMError, create_backend, default_gguf_path
    from agent.llm.model_files import SMOLLM2_INSTALL
    from retrieval.packaged import EMBEDDER_INSTALL, default_embedder_dir
    from serve.backends import backend_from_settings

    s = settings()
    rows: list[tuple[str, str]] = [
        ("python", platform.python_version()),
        ("torch", _version("torch")),
        ("llama-cpp-python", _version("llama-cpp-python")),
        ("faiss-cpu", _version("faiss-cpu")),
        ("sentence-transformers", _version("sentence-transformers")),
        ("GPU visible", _gpu()),
        ("data dir", str(s.data_dir)),
        ("LLM backend", s.llm.backend + (f" at {s.llm.base_url}" if s.llm.base_url else "")),
        ("LLM model (configured)", s.llm.model or "default (packaged SmolLM2-135M-Instruct)"),
    ]
    healthy = True
    gguf = default_gguf_path()
    if gguf is None:
        rows.append(("embedded model file", f"MISSING: run .venv/bin/{SMOLLM2_INSTALL}"))
        healthy = False
    else:
        rows.append(("embedded model file", f"{gguf} ({gguf.stat().st_size / 1e6:.1f} MB)"))
    emb = default_embedder_dir()
    embedder = s.embedder.model or (str(emb) if emb else None)
    if embedder is None:
        rows.append(("embedder", f"MISSING: run .venv/bin/{EMBEDDER_INSTALL}"))
        healthy = False
    else:
        rows.append(("embedder", embedder))

    if not skip_generation:
        if gguf is not None:
            try:
                embedded = create_backend("embedded")
            except LLMError as exc:
                rows.append(("embedded constrained generation", f"failed: {exc}"))
                healthy = False
            else:
                ok, detail = _constrained_check(embedded)
                rows.append(("embedded constrained generation", detail))
                healthy = healthy and ok
                embedded.close()
        if s.llm.backend != "embedded":
            try:
                ok, detail = _constrained_check(backend_from_settings(s))
            except LLMError as exc:
                detail = f"failed: {exc}"
            rows.append((f"{s.llm.backend} constrained generation", detail))

    table = Table(title="tagsmith doctor", show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    console.print("[bold green]healthy[/]" if healthy else "[bold red]not healthy[/]")
    raise typer.Exit(0 if healthy else 1)
