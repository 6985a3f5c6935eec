"""``tagsmith crosswalk``: import, list, inspect and edit crosswalks between taxonomies, and
list the rows a taxonomy edit broke."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from serve.cli._common import (
    TaxonomyFileArg,
    TaxonomyFormatArg,
    VersionMessageOpt,
    console,
    fail,
    store_settings,
)

if TYPE_CHECKING:
    from taxonomy.crosswalk_catalog import CrosswalkCatalog

app = typer.Typer(no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="the crosswalk's name, e.g. google")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


@contextmanager
def open_catalog() -> Iterator[CrosswalkCatalog]:
    """The data directory's crosswalks and taxonomies; the catalog's errors become clean
    one-line failures."""
    from serve.crosswalks import open_crosswalk_catalog
    from serve.filemodes import private_data_dir
    from taxonomy import StaleVersion, TaxonomyError, TaxonomyStore, UnknownVersion
    from taxonomy.crosswalk_catalog import MissingTaxonomy
    from taxonomy.crosswalk_store import UnknownCrosswalk

    s = store_settings()
    private_data_dir(s.data_dir)
    with TaxonomyStore(s.taxonomy_db_url) as store, open_crosswalk_catalog(s, store) as catalog:
        try:
            yield catalog
        except (UnknownCrosswalk, UnknownVersion, MissingTaxonomy, TaxonomyError) as exc:
            fail(str(exc))
        except StaleVersion as exc:
            fail(f"the crosswalk changed meanwhile (now version {exc.current}): show it again and retry")
        except ValueError as exc:  # an invalid name
            fail(str(exc))


def _print_report(report_summary: dict[str, int]) -> None:
    console.print(
        ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in report_summary.items()), highlight=False, markup=False
    )


@app.command("import-taxonomy")
def import_taxonomy(
    name: Annotated[str, typer.Argument(help="the taxonomy's name, e.g. google")],
    format: TaxonomyFormatArg,
    path: TaxonomyFileArg,
    message: VersionMessageOpt = None,
) -> None:
    """Import a taxonomy a crosswalk maps to (e.g. Google's) into its own versioned store."""
    from taxonomy import IMPORT_FORMATS, read_document

    if format not in IMPORT_FORMATS:
        fail(f"unknown format {format!r}: choose one of {', '.join(IMPORT_FORMATS)}")
    with open_catalog() as catalog:
        try:
            document = read_document(path, format)
        except UnicodeDecodeError:
            fail(f"cannot import {path}: not UTF-8 text")
        snap = catalog.import_taxonomy(name, document, message=message or f"import {path.name}")
    console.print(f"taxonomy {name}: imported {len(snap)} nodes as version {snap.version}", markup=False)


@app.command("import")
def import_(
    name: NameArg,
    path: Annotated[Path | None, typer.Argument(exists=True, dir_okay=False, help="the mapping (.gz accepted)")] = None,
    packaged: Annotated[bool, typer.Option(
        "--packaged", help="the packaged Shopify → Google mapping (and the Google Product Taxonomy, if not imported yet)"
    )] = False,
    target_taxonomy: Annotated[str | None, typer.Option(help="store name of the target (default: from the file)")] = None,
    message: Annotated[str | None, typer.Option(help="a note stored with the version")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a published mapping (Shopify's form, or our own JSON) as the next version of
    crosswalk NAME; rows with unknown ids are kept and reported."""
    from taxonomy.formats.crosswalk import read_crosswalk

    if (path is None) == (not packaged):
        fail("give the mapping file PATH, or --packaged")
    with open_catalog() as catalog:
        if packaged:
            crosswalk, report = catalog.install_packaged(name)
        else:
            assert path is not None
            document = read_crosswalk(path, target_taxonomy=target_taxonomy)
            crosswalk, report = catalog.import_crosswalk(name, document, message=message or f"import {path.name}")
    if as_json:
        sys.stdout.write(json.dumps({"name": name, "version": crosswalk.version, "report": report.model_dump()}) + "\n")
        return
    console.print(f"crosswalk {name}: version {crosswalk.version} ({crosswalk.document.source_taxonomy} v"
                  f"{crosswalk.info.source_version} → {crosswalk.document.target_taxonomy} v"
                  f"{crosswalk.info.target_version})", markup=False)
    _print_report(report.summary())
    for sid in report.unknown_source[:20]:
        console.print(f"  unresolved source {sid}", markup=False, highlight=False)
    for p in report.unknown_target[:20]:
        console.print(f"  unknown target {p.target_id} (row {p.source_id})", markup=False, highlight=False)


@app.command("list")
def list_() -> None:
    """The crosswalks, at their current versions."""
    with open_catalog() as catalog:
        items = list(catalog)
    if not items:
        fail("no crosswalk yet: `tagsmith crosswalk import google --packaged`, or import a mapping file")
    table = Table("name", "version", "from", "to", "rows", "created (UTC)")
    for c in items:
        doc = c.document
        table.add_row(
            escape(c.name), str(c.version), escape(f"{doc.source_taxonomy} v{c.info.source_version} ({doc.source_label})"),
            escape(f"{doc.target_taxonomy} v{c.info.target_version} ({doc.target_label})"), f"{c.info.row_count:,}",
            c.info.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)


@app.command("show")
def show(
    name: NameArg,
    node_id: Annotated[str | None, typer.Argument(metavar="[ID]", help="a source node: show its counterpart")] = None,
    no_fallback: Annotated[bool, typer.Option("--no-fallback", help="no nearest-ancestor fallback")] = False,
    as_json: JsonOpt = False,
) -> None:
    """A crosswalk checked against both taxonomies, or one node's counterpart."""
    with open_catalog() as catalog:
        if node_id is None:
            crosswalk = catalog.get(name)
            report = catalog.report(name)
            info = {**crosswalk.info.model_dump(mode="json"), "title": crosswalk.document.title,
                    "source_taxonomy": crosswalk.document.source_taxonomy,
                    "target_taxonomy": crosswalk.document.target_taxonomy,
                    "source": crosswalk.document.source, "report": report.summary()}
            if as_json:
                sys.stdout.write(json.dumps({**info, "report": report.model_dump()}, ensure_ascii=False) + "\n")
                return
            for key, value in info.items():
                console.print(f"[bold]{key}[/]: {escape(str(value))}", highlight=False)
            return
        resolved, found = catalog.counterpart(name, node_id, fallback=not no_fallback)
    if node_id not in resolved.source:
        fail(f"no node {node_id!r} in version {resolved.source.version} of the source taxonomy")
    target = resolved.target
    row = resolved.crosswalk.rows.get(node_id)
    targets = [{"id": t, "path": target.path_text(t)} for t in found.target_ids]
    payload = {
        "crosswalk": name, "crosswalk_version": resolved.crosswalk.version,
        "node": node_id, "path": resolved.source.path_text(node_id),
        "row": None if row is None else list(row.target_ids), "status": found.status, "source_id": found.source_id,
        "targets": targets, "reason": found.reason,
    }
    if as_json:
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
        return
    console.print(f"{node_id} ({payload['path']}): {found.status}", markup=False, highlight=False)
    if found.status == "ancestor":
        console.print(f"  via ancestor {found.source_id}", markup=False, highlight=False)
    for t in targets:
        console.print(f"  → {t['id']}  {t['path']}", markup=False, highlight=False)
    if found.reason:
        console.print(f"  {found.reason}", markup=False, highlight=False)


@app.command("broken")
def broken(
    name: NameArg,
    source_version: Annotated[int | None, typer.Option(help="a stored version of the source taxonomy (default: newest)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rows broken by edits of the source taxonomy (removed, deprecated or merged, moved) or
    of the target; exits 1 when there are any."""
    with open_catalog() as catalog:
        rows = catalog.broken(name, source_version)
    if as_json:
        for row in rows:
            sys.stdout.write(row.model_dump_json() + "\n")
    else:
        counts = Counter(r.reason for r in rows)
        console.print(f"{len(rows)} broken row(s)" + (f": {dict(counts)}" if rows else ""), markup=False)
        table = Table("source id", "reason", "suggestion", "targets", "detail")
        for r in rows[:200]:
            table.add_row(escape(r.source_id), r.reason, escape(r.suggestion or ""), escape(", ".join(r.target_ids)),
                          escape(r.detail or ""))
        if rows:
            console.print(table)
    if rows:
        raise typer.Exit(1)


@app.command("set")
def set_row(
    name: NameArg,
    source_id: Annotated[str, typer.Argument(metavar="SOURCE_ID")],
    target_ids: Annotated[list[str] | None, typer.Argument(metavar="[TARGET_ID...]", help="none: no counterpart")] = None,
    remove: Annotated[bool, typer.Option("--remove", help="remove the row instead")] = False,
    expected_version: Annotated[int | None, typer.Option(help="fail if the crosswalk is no longer at this version")] = None,
    message: Annotated[str | None, typer.Option(help="a note stored with the version")] = None,
) -> None:
    """Set (or remove) one row, as a new version of the crosswalk."""
    from taxonomy.crosswalk import RowEdit

    if remove and target_ids:
        fail("--remove takes no TARGET_ID")
    with open_catalog() as catalog:
        edit = RowEdit(source_id=source_id, target_ids=None if remove else tuple(target_ids or ()))
        crosswalk, report = catalog.edit(name, [edit], expected_version=expected_version, message=message)
    console.print(f"crosswalk {name}: version {crosswalk.version}", markup=False)
    _print_report(report.summary())
