"""``tagsmith llm``: see which backend is configured and run one constrained generation."""

from __future__ import annotations

import json
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
                "backend": backend.name,
                "model": backend.model,
                "text": gen.text,
                "parsed": gen.parsed,
                "latency_ms": round(gen.latency_ms, 1),
                "completion_tokens": gen.completion_tokens,
            }
        )
    )
