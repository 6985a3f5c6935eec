"""``tagsmith eval``: run a pipeline on labelled data, report runs, gate regressions.

Exit codes of ``report`` and ``compare``: 0 success, 1 the gate failed, 2 bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from serve.cli._common import console, fail
from serve.cli.eval_run_cmd import run

app = typer.Typer(no_args_is_help=True)
# `tagsmith eval run` lives in eval_run_cmd.py (the runner); report and compare below
app.command("run")(run)


@app.command("report")
def report(
    runs: Annotated[list[Path], typer.Argument(help="run directories (each with metrics.json)", exists=True, file_okay=False)],
    out: Annotated[Path, typer.Option(help="where report.md, report.html and the PNGs go", file_okay=False)],
    taxonomy: Annotated[
        Path | None,
        typer.Option(help="taxonomy JSON for node names (default: the one in each run.json)", exists=True, dir_okay=False),
    ] = None,
) -> None:
    """Compare runs side by side in Markdown and HTML, with plots and the worst errors.
    Attribute runs (--task attributes) get the attribute report: P/R/F1 per category and
    attribute, and each run minus each one listed before it as a paired bootstrap
    difference (list the baselines first)."""
    from evals.attributes.report import is_attribute_run, write_attribute_report
    from evals.report import write_report

    kinds = {is_attribute_run(r) for r in runs}
    if len(kinds) > 1:
        fail("cannot report attribute runs and category runs together: give one kind", 2)
    try:
        if kinds == {True}:
            path = write_attribute_report(runs, out)
        else:
            path = write_report(runs, out, taxonomy=taxonomy)
    except (ValueError, OSError) as exc:
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
        new_metrics = load_metrics(new)
        result = compare_runs(load_metrics(base), new_metrics, margin=margin)
    except ValueError as exc:
        fail(str(exc), 2)
    table = Table(title=f"regression gate (margin {margin} points)")
    for col in ("metric", "compared", "base", "new", "delta", "verdict"):
        table.add_column(col)
    for row in result.rows:
        verdict = "[green]ok[/]" if row.ok else "[bold red]worse[/]"
        table.add_row(row.metric, row.compared, f"{row.base:.2f}", f"{row.new:.2f}", f"{row.delta:+.2f}", verdict)
    if new_metrics.get("task") == "attributes":
        bad = result.off_schema_values
        table.add_row("off_schema_values", "point (must be 0)", "", str(bad), "",
                      "[green]ok[/]" if bad == 0 else "[bold red]worse[/]")
    else:
        off = result.off_taxonomy_rate
        table.add_row("off_taxonomy_rate", "point (must be 0)", "", f"{off:g}", "",
                      "[green]ok[/]" if off == 0 else "[bold red]worse[/]")
    console.print(table)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    if not result.ok:
        console.print("[bold red]FAIL[/]")
        for line in result.failures:
            console.print(f"  {line}", highlight=False)
        raise typer.Exit(1)
    console.print("[green]PASS[/]")
