"""``tagsmith review``: the review queue of the data directory, from the host (no server needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from serve.cli._common import console, fail, store_settings

if TYPE_CHECKING:
    from serve.review import ReviewStore

app = typer.Typer(no_args_is_help=True)

STATUS_HELP = "only items of these statuses, comma-separated: open, claimed, accepted, corrected, skipped (default: all)"


def review_store() -> ReviewStore:
    """The data directory's review queue (``<data_dir>/review.db``), as the service opens it."""
    from serve.filemodes import private_data_dir
    from serve.review import ReviewStore
    from serve.state import review_store_path

    s = store_settings()
    private_data_dir(s.data_dir)
    return ReviewStore(review_store_path(s), claim_ttl_s=s.review.claim_ttl_s)


def _statuses(flag: str | None) -> list[str]:
    from serve.review import STATUSES

    if flag is None:
        return list(STATUSES)
    wanted = [s.strip() for s in flag.split(",") if s.strip()]
    bad = [s for s in wanted if s not in STATUSES]
    if bad or not wanted:
        fail(f"--status: unknown status {(bad or [flag])[0]!r}; use {', '.join(STATUSES)}")
    return wanted


@app.command("export")
def export(
    output: Annotated[Path, typer.Option("-o", "--output", help="JSONL file to write (replaced atomically)", dir_okay=False)],
    status: Annotated[str | None, typer.Option("--status", help=STATUS_HELP)] = None,
) -> None:
    """Export review items as JSONL, one item per line (the lines of GET /v1/review/export)."""
    from retrieval.durable import atomic_path
    from serve.api.review.service import export_line

    wanted = _statuses(status)
    store = review_store()
    n = 0
    try:
        with atomic_path(output) as tmp, tmp.open("w", encoding="utf-8") as fh:
            for item in store.iter_items(statuses=wanted):  # type: ignore[arg-type]
                fh.write(export_line(item))
                n += 1
    finally:
        store.close()
    console.print(f"{n} review item(s) → {output}", soft_wrap=True, highlight=False)


@app.command("stats")
def stats() -> None:
    """Open and claimed items, pending ones by reason, decisions today."""
    store = review_store()
    try:
        s = store.stats()
    finally:
        store.close()
    console.print(f"open {s.open}, claimed {s.claimed}, decided today "
                  + ", ".join(f"{k} {v}" for k, v in s.decided_today.items()), soft_wrap=True, highlight=False)
    for reason, count in s.open_by_reason.items():
        console.print(f"  {reason}: {count}", highlight=False)
