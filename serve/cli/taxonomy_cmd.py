"""``tagsmith taxonomy``: import, export, inspect, diff and validate against the taxonomy store."""

from __future__ import annotations

import json
import sys
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
    from taxonomy import Snapshot, TaxonomyStore

app = typer.Typer(no_args_is_help=True)

VersionOpt = Annotated[int | None, typer.Option("--version", "-v", help="a stored version (default: current)")]


def _store() -> TaxonomyStore:
    from serve.filemodes import private_data_dir
    from taxonomy import TaxonomyStore

    s = store_settings()
    private_data_dir(s.data_dir)
    return TaxonomyStore(s.taxonomy_db_url)


def _snapshot(store: TaxonomyStore, version: int | None) -> Snapshot:
    from taxonomy import UnknownVersion

    if store.version == 0:
        fail(
            "the taxonomy store is empty: fill it with `tagsmith taxonomy import FORMAT PATH` "
            "or `tagsmith taxonomy init` (the packaged Shopify taxonomy)"
        )
    try:
        return store.current() if version is None else store.snapshot(version)
    except UnknownVersion as exc:
        fail(f"{exc} (versions 1..{store.version} exist)")


@app.command("init")
def init() -> None:
    """Seed an empty store with the packaged default taxonomy (Shopify 2024-07 categories,
    attributes and values)."""
    from taxonomy import seed_default_taxonomy

    with _store() as store:
        was_empty = store.version == 0
        snap = seed_default_taxonomy(store)
    verb = "imported" if was_empty else "store already holds a taxonomy; current is"
    console.print(f"{verb} version {snap.version}: {snap.document.name} ({len(snap)} nodes)", markup=False)


@app.command("import")
def import_(
    format: TaxonomyFormatArg,
    path: TaxonomyFileArg,
    message: VersionMessageOpt = None,
) -> None:
    """Import a taxonomy file into the store as a new version."""
    from taxonomy import IMPORT_FORMATS, EditRejected, TaxonomyFormatError

    if format not in IMPORT_FORMATS:
        fail(f"unknown format {format!r}: choose one of {', '.join(IMPORT_FORMATS)}")
    with _store() as store:
        try:
            snap = store.import_taxonomy(path, format, message=message or f"import {path.name}")
        except (TaxonomyFormatError, EditRejected) as exc:
            fail(f"cannot import {path}: {exc}")
        except UnicodeDecodeError:
            fail(f"cannot import {path}: not UTF-8 text")
    console.print(
        f"imported {len(snap)} nodes ({len(snap.active_leaf_ids)} active leaves) as version {snap.version}"
    )


@app.command("export")
def export(
    format: Annotated[str, typer.Option("--format", "-f", help="json or google")] = "json",
    version: VersionOpt = None,
) -> None:
    """Write the taxonomy to stdout."""
    from taxonomy import EXPORT_FORMATS, TaxonomyFormatError, dump

    if format not in EXPORT_FORMATS:
        fail(f"unknown format {format!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    with _store() as store:
        snap = _snapshot(store, version)
        try:
            text = dump(snap, format)
        except TaxonomyFormatError as exc:
            fail(str(exc))
    sys.stdout.write(text)


@app.command("show")
def show(
    node_id: Annotated[str, typer.Argument(metavar="ID")],
    version: VersionOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Show one node: path, children, synonyms, status, attributes."""
    from taxonomy import suggest_id

    with _store() as store:
        snap = _snapshot(store, version)
    node = snap.get(node_id)
    if node is None:
        hint = suggest_id(snap, node_id)
        fail(f"no node {node_id!r} in version {snap.version}" + (f"; did you mean {hint!r}?" if hint else ""))
    info = {
        "id": node.id,
        "name": node.name,
        "version": snap.version,
        "path": snap.path_text(node.id),
        "parent": node.parent,
        "children": list(snap.children(node.id, include_deprecated=True)),
        "is_leaf": snap.is_leaf(node.id),
        "synonyms": list(node.synonyms),
        "description": node.description,
        "deprecated": node.deprecated,
        "replaced_by": node.replaced_by,
        "resolves_to": snap.resolve(node.id),
        "attributes": [a.id for a in snap.attributes_for(node.id)],
    }
    if as_json:
        sys.stdout.write(json.dumps(info, ensure_ascii=False) + "\n")
        return
    for key, value in info.items():
        if value not in (None, [], False) or key in ("is_leaf",):
            console.print(f"[bold]{key}[/]: {escape(str(value))}", highlight=False)


@app.command("search")
def search_(
    text: Annotated[str, typer.Argument()],
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    version: VersionOpt = None,
) -> None:
    """Find nodes by words of their name, synonyms or path."""
    from taxonomy import search

    with _store() as store:
        snap = _snapshot(store, version)
    hits = search(snap, text, limit=limit)
    if not hits:
        fail(f"nothing matches {text!r}")
    table = Table("id", "path")
    for hit in hits:
        table.add_row(escape(hit.id), escape(hit.path))
    console.print(table)


@app.command("versions")
def versions() -> None:
    """List the stored versions, oldest first."""
    with _store() as store:
        rows = store.versions()
    if not rows:
        fail("the taxonomy store is empty: fill it with `tagsmith taxonomy import FORMAT PATH`")
    table = Table("version", "kind", "created (UTC)", "edits", "nodes", "active", "author", "message")
    for r in rows:
        table.add_row(
            str(r.version), r.kind, r.created_at.strftime("%Y-%m-%d %H:%M:%S"), str(r.edit_count),
            str(r.node_count), str(r.active_count), escape(r.author or ""), escape(r.message or ""),
        )
    console.print(table)


@app.command("diff")
def diff(
    v1: Annotated[int, typer.Argument()],
    v2: Annotated[int, typer.Argument()],
    as_json: Annotated[bool, typer.Option("--json", help="the full diff as JSON")] = False,
) -> None:
    """What changed from version V1 to V2 (and how stored tags migrate)."""
    from taxonomy import UnknownVersion

    with _store() as store:
        try:
            result = store.diff(v1, v2)
            mapping = store.migration_map(v1, v2)
        except UnknownVersion as exc:
            fail(str(exc))
    if as_json:
        payload = {**result.model_dump(mode="json"), "migration_map": mapping}
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
        return
    console.print(f"version {v1} → {v2}", highlight=False, markup=False)
    if result.is_empty:
        console.print("no changes")
    for key, count in result.summary().items():
        if count:
            console.print(f"  {key}: {count}", highlight=False, markup=False)
    for r in result.renamed[:50]:
        console.print(f"  renamed {r.id}: {r.old_name!r} → {r.new_name!r}", highlight=False, markup=False)
    for m in result.moved[:50]:
        console.print(f"  moved {m.id}: {m.old_parent} → {m.new_parent}", highlight=False, markup=False)
    for old, new in list(mapping.items())[:50]:
        console.print(f"  migrate {old} → {new if new is not None else '(no successor)'}", highlight=False, markup=False)


@app.command("validate-tags")
def validate_tags(
    ids: Annotated[list[str], typer.Argument(metavar="ID...")],
    leaf_only: Annotated[bool, typer.Option(help="only active leaves are acceptable")] = False,
    version: VersionOpt = None,
) -> None:
    """Check tag ids against the taxonomy; exits 1 if any id is rejected."""
    from taxonomy import TagValidator

    with _store() as store:
        snap = _snapshot(store, version)
    report = TagValidator(leaf_only=leaf_only).validate(snap, ids)
    errors = {e.index: e for e in report.errors}
    for index, tag in enumerate(ids):
        error = errors.get(index)
        if error is None:
            console.print(f"ok        {tag}  ({snap.path_text(tag)})", highlight=False, markup=False)
        else:
            hint = f"  → suggestion: {error.suggestion}" if error.suggestion else ""
            console.print(f"rejected  {tag}  [{error.rule}] {error.message}{hint}", highlight=False, markup=False)
    if not report.ok:
        raise typer.Exit(1)
