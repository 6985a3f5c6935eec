"""``tagsmith serve``: run the HTTP service (settings from the environment / config file)."""

from __future__ import annotations

from typing import Annotated

import typer

from serve.cli._common import console, settings


def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 8000)", min=1, max=65535)] = None,
) -> None:
    import uvicorn

    from serve.app import create_app

    s = settings()
    if host is not None:
        s.server.host = host
    if port is not None:
        s.server.port = port
    console.print(
        f"tagsmith serving on http://{s.server.host}:{s.server.port} "
        f"(LLM: {s.llm.backend}; docs at /docs)"
    )
    uvicorn.run(
        create_app(s), host=s.server.host, port=s.server.port, log_level=s.log_level
    )
