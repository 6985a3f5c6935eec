"""Crosswalks in a shared database (the service's ``database.url``): two catalogs with their
own data directories (two replicas) on one database see the same crosswalks and target
taxonomies, nothing is written to their data directories, a write through one makes the
other's version stale, and the other uses a new version within its ``refresh_s``. On SQLite
(one file both open) and PostgreSQL (``database_url``: the postgres tier), where the target
taxonomy's tables live in a schema of their own beside the tagging taxonomy's."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from taxonomy import StaleVersion, TaxonomyStore
from taxonomy.crosswalk import RowEdit
from taxonomy.crosswalk_catalog import CrosswalkCatalog, MissingTaxonomy
from tests.taxonomy.helpers import apparel_document
from tests.taxonomy.test_crosswalk import crosswalk_document, target_document

REFRESH_S = 0.3


def test_two_replicas_share_crosswalks_and_their_taxonomies(database_url: str, tmp_path: Path) -> None:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    with TaxonomyStore(database_url) as store_a, TaxonomyStore(database_url) as store_b:
        store_a.import_document(apparel_document())
        store_b.refresh()
        with CrosswalkCatalog(a_dir, store_a, database_url=database_url, refresh_s=REFRESH_S) as a, \
                CrosswalkCatalog(b_dir, store_b, database_url=database_url, refresh_s=REFRESH_S) as b:
            with pytest.raises(MissingTaxonomy):
                b.taxonomy("target")
            a.import_taxonomy("target", target_document())
            imported, _ = a.import_crosswalk("target", crosswalk_document(), message="through a")
            assert b.names() == {"target": 1}
            assert b.taxonomy("target").version == 1 and len(b.taxonomy("target")) == 6
            _, shirts = b.counterpart("target", "shirts")
            assert shirts.status == "mapped" and shirts.target_ids == ("g3",)
            # the tagging taxonomy and the target one do not share tables
            assert store_b.current().version == 1 and "g3" not in store_b.current()

            edited, _ = b.edit("target", [RowEdit(source_id="shirts", target_ids=("g2",))], expected_version=1)
            with pytest.raises(StaleVersion):  # a still holds version 1: b's edit made it stale
                a.edit("target", [RowEdit(source_id="food", target_ids=("g5",))], expected_version=1)
            started = time.monotonic()
            while a.counterpart("target", "shirts")[1].target_ids != ("g2",):
                # within REFRESH_S on an idle machine; 60 s: a loaded one can stall a thread for seconds
                assert time.monotonic() - started < 60, "a never used b's version"
                time.sleep(0.05)
            assert a.resolve("target").crosswalk.version == edited.version == imported.version + 1
            b.import_taxonomy("target", target_document().model_copy(update={"source_version": "2022"}))
            assert a.taxonomy("target", fresh=True).version == 2
    for data_dir in (a_dir, b_dir):  # nothing of it in the replicas' own data directories
        assert not (data_dir / "crosswalks.db").exists() and not (data_dir / "taxonomies").exists()
