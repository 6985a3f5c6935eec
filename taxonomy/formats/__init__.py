"""Readers and writers: ``json`` (ours), ``google`` (taxonomy-with-ids text), ``shopify``;
import only: ``wdc-pave`` (WDC-PAVE's schema.json), ``flipkart`` (tree + observed attributes)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Literal, get_args

from taxonomy.errors import TaxonomyFormatError
from taxonomy.formats.flipkart import parse_flipkart
from taxonomy.formats.google import dump_google_text, parse_google_text
from taxonomy.formats.json_format import dump_json, parse_json_document
from taxonomy.formats.shopify import parse_shopify
from taxonomy.formats.wdc_pave import parse_wdc_pave
from taxonomy.model import TaxonomyDocument, paused_gc
from taxonomy.snapshot import Snapshot

ImportFormat = Literal["json", "google", "shopify", "wdc-pave", "flipkart"]
ExportFormat = Literal["json", "google"]
IMPORT_FORMATS: tuple[str, ...] = get_args(ImportFormat)
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)


def read_text(path: str | Path) -> str:
    """A UTF-8 file, transparently gunzipped when it ends in ``.gz``."""
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8")


def parse_document(text: str, format: str) -> TaxonomyDocument:
    if format == "google":
        with paused_gc():
            return parse_google_text(text)
    parsers = {"json": parse_json_document, "shopify": parse_shopify, "wdc-pave": parse_wdc_pave,
               "flipkart": parse_flipkart}
    if format not in parsers:
        raise TaxonomyFormatError(f"unknown format {format!r}: choose one of {', '.join(IMPORT_FORMATS)}")
    with paused_gc():
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TaxonomyFormatError(f"not valid JSON: {exc}") from exc
        return parsers[format](data)


def read_document(path: str | Path, format: str = "json") -> TaxonomyDocument:
    return parse_document(read_text(path), format)


def load_taxonomy(path: str | Path, format: str = "json") -> Snapshot:
    """A standalone snapshot (version 0) of a taxonomy file; ``.gz`` files are accepted."""
    return Snapshot(read_document(path, format), version=0)


def dump(snapshot: Snapshot, format: str = "json") -> str:
    if format == "json":
        return dump_json(snapshot)
    if format == "google":
        return dump_google_text(snapshot)
    raise TaxonomyFormatError(f"unknown export format {format!r}: choose one of {', '.join(EXPORT_FORMATS)}")


__all__ = [
    "EXPORT_FORMATS",
    "IMPORT_FORMATS",
    "ExportFormat",
    "ImportFormat",
    "dump",
    "dump_google_text",
    "dump_json",
    "load_taxonomy",
    "parse_document",
    "parse_flipkart",
    "parse_google_text",
    "parse_json_document",
    "parse_shopify",
    "parse_wdc_pave",
    "read_document",
]
