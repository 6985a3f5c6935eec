"""``tagsmith doctor``: is this installation usable? Exit 0 only when the embedded default works."""

from __future__ import annotations

import importlib.metadata
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from serve.cli._common import console, settings

if TYPE_CHECKING:
    from serve.settings import Settings

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


def _model_rows(model: str | None, runtime: str = "transformers") -> list[tuple[str, str]]:
    """What the configured model directory says about itself (its manifest), if anything."""
    from agent.llm.manifest import read_manifest
    from agent.llm.transformers_backend import is_hf_model_dir

    if not is_hf_model_dir(model):
        return []
    assert model is not None
    try:
        manifest = read_manifest(Path(model))
    except ValueError as exc:
        return [("LLM model manifest", f"INVALID: {exc}")]
    if manifest is None:
        return [("LLM model manifest", f"none (a plain Hugging Face export), runtime: {runtime}")]
    base = manifest.get("base") or {}
    data = manifest.get("data") or {}
    val = (manifest.get("validation") or [{}])[-1]
    hyper = manifest.get("hyperparameters") or {}
    taxonomy = manifest.get("taxonomy") or {}
    return [
        ("LLM model kind", f"{manifest.get('kind')} (runtime: {runtime})"),
        ("LLM base model", f"{base.get('name')} sha256 {str(base.get('sha256'))[:16]}"),
        ("LLM training data", f"{data.get('train_items')} prompts from {data.get('examples')} examples, "
                              f"sha256 {str(data.get('sha256'))[:16]}"),
        ("LLM taxonomy", f"version {taxonomy.get('version')} sha256 {str(taxonomy.get('sha256'))[:16]}"),
        ("LLM hyper-parameters", f"{hyper.get('method')} lr {hyper.get('learning_rate')} "
                                 f"epochs {hyper.get('epochs')} batch {hyper.get('batch_size')}"),
        ("LLM validation", f"accuracy {val.get('val_accuracy')} on {val.get('val_n')} held-out "
                           f"(retrieval vote {manifest.get('validation_vote_top1')})"),
        ("LLM blend weight", _blend_row(manifest.get("blend"))),
    ]


def _blend_row(blend: object) -> str:
    if not isinstance(blend, dict):
        return "not fitted: the agent's default (0.3) applies"
    return (f"{blend.get('llm_weight')} fitted on {blend.get('n')} products ({blend.get('source')}): "
            f"accuracy {blend.get('accuracy')}, vote alone {blend.get('vote_accuracy')}")


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
        ("LLM backend", s.llm.backend + (f" at {', '.join(s.llm.endpoints())}" if s.llm.endpoints() else "")),
        ("LLM model (configured)", s.llm.model or "default (packaged SmolLM2-135M-Instruct)"),
    ]
    if s.llm.backend == "embedded":
        rows.extend(_model_rows(s.llm.model))
    elif s.llm.model_dir:
        rows.append(("LLM model directory", s.llm.model_dir))
        rows.extend(_model_rows(s.llm.model_dir, runtime=f"served at {', '.join(s.llm.endpoints())}"))
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

    schema_detail, schema_ok = _schema_row(s)
    rows.append(("database schema", schema_detail))
    healthy = healthy and schema_ok

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
        if s.llm.backend != "embedded" or s.llm.model:
            try:
                ok, detail = _constrained_check(backend_from_settings(s))
            except LLMError as exc:
                detail = f"failed: {exc}"
            label = s.llm.backend if s.llm.backend != "embedded" else "configured model"
            rows.append((f"{label} constrained generation", detail))

    table = Table(title="tagsmith doctor", show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    console.print("[bold green]healthy[/]" if healthy else "[bold red]not healthy[/]")
    raise typer.Exit(0 if healthy else 1)


def _schema_row(s: Settings) -> tuple[str, bool]:
    """Where the stores' schemas stand (serve/migrations.py), reading only; healthy unless a
    store is newer than this release, unreachable, or behind while auto_upgrade is off."""
    from sqlalchemy.exc import SQLAlchemyError

    from serve.migrations import current

    try:
        found = current(s)
    except SQLAlchemyError as exc:
        return f"unreachable: {type(exc).__name__}", False
    newer = [t.label for t, st in found if not st.known]
    pending = [t.label for t, st in found if st.pending]
    if newer:
        return f"NEWER than this release: {', '.join(newer)}", False
    if pending:
        how = "upgraded at the next start" if s.database.auto_upgrade else "run `tagsmith db upgrade`"
        return f"upgrade pending ({', '.join(pending)}): {how}", s.database.auto_upgrade
    return f"at head ({len(found)} stores)", True

