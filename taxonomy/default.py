"""The default taxonomy shipped in the package: the Shopify Standard Product Taxonomy, its
2024-07 categories with the 2024-04 attributes and values merged in (MIT, see NOTICE).

The file is our JSON format, built by ``scripts/build_default_taxonomy.py`` from the shared
Shopify files (:func:`taxonomy.formats.shopify_attributes.build_packaged_default`).
"""

from __future__ import annotations

from pathlib import Path

from taxonomy.errors import StaleVersion
from taxonomy.formats import load_taxonomy, read_document
from taxonomy.snapshot import Snapshot
from taxonomy.store import TaxonomyStore

DEFAULT_TAXONOMY_FILE = "shopify_2024-07_with_attributes.json.gz"
DEFAULT_TAXONOMY_FORMAT = "json"


def default_taxonomy_path() -> Path:
    return Path(__file__).resolve().parent / "data" / DEFAULT_TAXONOMY_FILE


def load_default_taxonomy() -> Snapshot:
    return load_taxonomy(default_taxonomy_path(), DEFAULT_TAXONOMY_FORMAT)


def seed_default_taxonomy(store: TaxonomyStore) -> Snapshot:
    """Import the packaged taxonomy when the store is empty; the current snapshot otherwise.

    Safe to call from several processes at start-up: only one import wins (the others see a
    stale version 0 and pick up the winner's version).
    """
    store.refresh()
    if store.version > 0:
        return store.current()
    document = read_document(default_taxonomy_path(), DEFAULT_TAXONOMY_FORMAT)
    try:
        return store.import_document(
            document, expected_version=0, author="tagsmith", message="packaged default taxonomy"
        )
    except StaleVersion:
        store.refresh()
        return store.current()
