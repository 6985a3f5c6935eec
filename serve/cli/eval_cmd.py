"""``tagsmith eval``: run a pipeline on labelled data, report runs, gate regressions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from serve.cli._common import console, fail
from serve.cli.eval_run_cmd import run

app = typer.Typer(no_args_is_help=True)
app.command("run")(run)


@app.command("report")
def report(
    runs: Annotated[list[Path], typer.Argument(help="run directories (each with metrics.json)", exists=True, file_okay=False)],
    out: Annotated[Path, typer.Option(help="where report.md, report.html and the PNGs go", file_okay=False)],
) -> None:
    """Compare runs side by side in Markdown and HTML, with plots and the worst errors."""
    from evals.report import write_report

    try:
        path = write_report(runs, out)
    except (ValueError, KeyError) as exc:
        fail(f"cannot build the report: {exc}", 2)
    console.print(f"wrote {path} and {path.with_suffix('.html')}")


@app.command("compare")
def compare(
    base: Annotated[Path, typer.Argument(help="base run directory or metrics.json", exists=True)],
    new: Annotated[Path, typer.Argument(help="new run directory or metrics.json", exists=True)],
    margin: Annotated[float, typer.Option(min=0.0, help="points a CI bound may worsen before the gate fails")] = 1.0,
) -> None:
    """Exit 1 when NEW is worse than BASE beyond the margin or returned off-taxonomy tags."""
    from rich.table import Table

    from evals.compare import compare_runs, load_metrics

    try:
        result = compare_runs(load_metrics(base), load_metrics(new), margin=margin)
    except (ValueError, KeyError, TypeError) as exc:
        fail(str(exc), 2)
    table = Table(title=f"regression gate (margin {margin} points)")
    for col in ("metric", "compared", "base", "new", "delta", "verdict"):
        table.add_column(col)
    for row in result.rows:
        verdict = "[green]ok[/]" if row.ok else "[bold red]worse[/]"
        table.add_row(row.metric, row.compared, f"{row.base:.2f}", f"{row.new:.2f}", f"{row.delta:+.2f}", verdict)
    console.print(table)
    if result.off_taxonomy_rate > 0:
        console.print(f"[bold red]off-taxonomy rate {result.off_taxonomy_rate} > 0[/]")
    if not result.ok:
        console.print("[bold red]FAIL[/]")
        raise typer.Exit(1)
    console.print("[green]PASS[/]")
