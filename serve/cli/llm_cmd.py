"""``tagsmith llm``: see which backend is configured, run one constrained generation,
export the model for vLLM and serve it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from serve.cli._common import console, fail, settings

app = typer.Typer(no_args_is_help=True)


@app.command("info")
def info() -> None:
    """Show the configured backend and model."""
    s = settings()
    console.print_json(
        json.dumps(
            {
                "backend": s.llm.backend,
                "model": s.llm.model,
                "base_url": s.llm.base_url,
                "base_urls": s.llm.base_urls,
                "timeout_s": s.llm.timeout_s,
            }
        )
    )


@app.command("generate")
def generate(
    prompt: Annotated[str, typer.Argument(help="user message")],
    choices: Annotated[
        str, typer.Option(help="comma-separated allowed ids; output is constrained to them")
    ] = "yes,no",
    max_tokens: Annotated[int, typer.Option(min=1, max=512)] = 32,
) -> None:
    """Run one schema-constrained generation and print the raw and parsed output."""
    from agent.llm import ChatMessage, LLMError, tags_schema
    from serve.backends import backend_from_settings

    allowed = [c.strip() for c in choices.split(",") if c.strip()]
    if not allowed:
        fail("--choices must name at least one id")
    try:
        backend = backend_from_settings(settings())
        gen = backend.generate(
            [ChatMessage("user", prompt)], tags_schema(allowed), max_tokens=max_tokens
        )
    except LLMError as exc:
        fail(str(exc))
    console.print_json(
        json.dumps(
            {
                "backend": backend.info.name,
                "model": backend.info.model,
                "text": gen.text,
                "parsed": gen.parsed,
                "latency_ms": round(gen.latency_ms, 1),
                "completion_tokens": gen.completion_tokens,
            }
        )
    )


@app.command("export-hf")
def export_hf_cmd(
    out: Annotated[Path, typer.Option("--out", help="directory to write (created atomically)")],
    model: Annotated[str, typer.Option(help="packaged model: smollm2 or gemma3-270m")] = "smollm2",
    gguf: Annotated[
        Path | None, typer.Option(help="export this GGUF file instead of a packaged model")
    ] = None,
    force: Annotated[bool, typer.Option(help="replace an existing directory")] = False,
) -> None:
    """Export the packaged GGUF model as a Hugging Face checkpoint directory (for vLLM)."""
    from agent.llm import LLMError
    from agent.llm.hf_export import export_hf, read_manifest

    try:
        directory = export_hf(out, model=model, gguf_path=gguf, force=force)
    except (LLMError, FileExistsError, ValueError) as exc:
        fail(str(exc))
    manifest = read_manifest(directory) or {}
    console.print_json(
        json.dumps(
            {
                "out": str(directory),
                "model": manifest.get("model"),
                "source": manifest.get("source"),
                "dtype": manifest.get("dtype"),
                "serve": f"tagsmith llm serve --model-dir {directory}",
            }
        )
    )


@app.command(
    "serve",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def serve_vllm(
    ctx: typer.Context,
    model_dir: Annotated[Path, typer.Option(help="a directory written by `tagsmith llm export-hf`")],
    host: Annotated[str, typer.Option(help="bind address (loopback unless told otherwise)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8001,
    python: Annotated[
        str | None,
        typer.Option(
            envvar="TAGSMITH_VLLM_PYTHON",
            help="interpreter that has vLLM (default: .venv-vllm/bin/python, else this one)",
        ),
    ] = None,
    max_model_len: Annotated[int, typer.Option(min=256)] = 2048,
    start_timeout: Annotated[float, typer.Option(help="seconds to wait for /health")] = 600.0,
) -> None:
    """Run vLLM's OpenAI-compatible server on MODEL_DIR; arguments after `--` go to vLLM.

    Prints the TAGSMITH_LLM__* settings that point tagsmith at it once /health answers.
    """
    from serve.vllm_launcher import (
        VLLMConfig,
        VLLMError,
        VLLMServer,
        find_python,
        serve_forever,
        tagsmith_settings,
    )

    config = VLLMConfig(
        model_dir=model_dir.expanduser().absolute(),
        host=host,
        port=port,
        max_model_len=max_model_len,
        extra_args=tuple(ctx.args),
    )
    server = VLLMServer(config, python=find_python(python))
    ready = [
        f"vLLM is serving {config.model_dir} as '{config.served_model_name}' at {config.base_url}/v1",
        "point tagsmith at it with:",
        *(f"export {k}={v}" for k, v in tagsmith_settings(config).items()),
    ]
    try:
        code = serve_forever(server, start_timeout_s=start_timeout, on_ready=ready)
    except VLLMError as exc:
        fail(str(exc))
    raise typer.Exit(code)
