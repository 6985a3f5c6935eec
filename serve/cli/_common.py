"""Helpers shared by the CLI commands: console, settings loading, clean failures."""

from __future__ import annotations

from typing import NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

from serve.settings import Settings, load_settings

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line error to stderr and exit: the CLI never shows a traceback for user errors."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings() -> Settings:
    try:
        return load_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        fail(f"invalid configuration: {problems}", 2)
    except (FileNotFoundError, ValueError) as exc:
        fail(f"invalid configuration: {exc}", 2)
