"""Index generations behind the backend interface (retrieval/generations.py): the same
behaviour from a directory and from a database (SQLite here; PostgreSQL in the postgres
tier): round trip, base checks (a stale publication writes nothing), clean-up, damage
refused, a directory's generation moved into the database as it is."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from retrieval import IndexCorruptError, IndexStore, NoIndexError, StaleGenerationError
from retrieval.calibration import Calibration
from retrieval.generations_db import DatabaseGenerations, blobs_table, files_table
from taxonomy.schema import make_engine
from tests.conftest import fresh_database

from .test_store import EMB, make_index


@pytest.fixture(params=["files", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IndexStore]:
    if request.param == "files":
        yield IndexStore(tmp_path / "index")
        return
    with contextlib.ExitStack() as stack:
        url = (f"sqlite:///{tmp_path / 'state.db'}" if request.param == "sqlite"
               else stack.enter_context(fresh_database(request.getfixturevalue("postgres"))))
        yield stack.enter_context(closing(IndexStore(backend=DatabaseGenerations(make_engine(url)))))


def test_round_trip_and_base_checks(store: IndexStore) -> None:
    with pytest.raises(NoIndexError):
        store.load(embedder=EMB, dim=16)
    first = store.publish(make_index(5), embedder=EMB, taxonomy_version=3, base=None)
    assert first.generation == "gen-000001" and store.current() is not None
    with pytest.raises(StaleGenerationError):  # "nothing is current" is no longer true
        store.publish(make_index(6), embedder=EMB, base=None)
    second = store.publish(make_index(7), embedder=EMB, base="gen-000001")
    with pytest.raises(StaleGenerationError):  # derived from gen 1, but gen 2 is current
        store.publish(make_index(8), embedder=EMB, base="gen-000001")
    index, manifest = store.load(embedder=EMB, dim=16)
    assert manifest == second and len(index) == 7 and manifest.generation == "gen-000002"
    store.publish(make_index(9), embedder=EMB)  # ANY: whatever is current
    store.publish(make_index(10), embedder=EMB)
    assert store.generations() == ["gen-000003", "gen-000004"]  # the current and the previous
    assert store.load(embedder=EMB, dim=16)[1].count == 10


def test_concurrent_publications_on_one_base_one_wins(store: IndexStore) -> None:
    store.publish(make_index(3), embedder=EMB)
    outcomes: list[str] = []
    lock = threading.Lock()

    def publish(n: int) -> None:
        try:
            store.publish(make_index(n), embedder=EMB, base="gen-000001")
            result = "won"
        except StaleGenerationError:
            result = "stale"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=publish, args=(4 + i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["stale"] * 5 + ["won"]
    assert store.current() is not None and store.current()[0] == "gen-000002"  # type: ignore[index]


def test_a_damaged_blob_is_refused(database_url: str) -> None:
    engine = make_engine(database_url)
    with closing(IndexStore(backend=DatabaseGenerations(engine))) as store:
        store.publish(make_index(), embedder=EMB)
        with engine.begin() as conn:
            digest = select(files_table.c.sha256).where(files_table.c.name == "ids.json").scalar_subquery()
            conn.execute(update(blobs_table).where(blobs_table.c.sha256 == digest).values(data=b"[]"))
        with pytest.raises(IndexCorruptError, match="corrupted"):
            store.load(embedder=EMB, dim=16)


def test_a_directory_generation_moves_into_the_database(database_url: str, tmp_path: Path) -> None:
    local = IndexStore(tmp_path / "index")
    calibration = Calibration(method="cross-fitted", temperature=0.5, knn_temperature=0.8, target_precision=0.95,
                              review_threshold=0.7, knn_review_threshold=0.6, held_out=10)
    published = local.publish(make_index(6), embedder=EMB, taxonomy_version=2, calibration=calibration)
    with closing(IndexStore(backend=DatabaseGenerations(make_engine(database_url)))) as store:
        moved = store.copy_from(local)
        index, manifest = store.load(embedder=EMB, dim=16)
    assert manifest == moved and len(index) == 6 and manifest.taxonomy_version == 2
    assert manifest.files == published.files and manifest.calibration == published.calibration


def test_unchanged_files_are_stored_once_and_unused_ones_collected(database_url: str) -> None:
    engine = make_engine(database_url)

    def blobs() -> int:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(blobs_table)).scalar_one())

    with closing(IndexStore(backend=DatabaseGenerations(engine))) as store:
        index = make_index(6)
        first = store.publish(index, embedder=EMB, taxonomy_version=1)
        assert blobs() == len(first.files) + 1  # + the manifest
        store.publish(index, embedder=EMB, taxonomy_version=2)  # the same files, a new manifest
        assert blobs() == len(first.files) + 2
        for n in (7, 8):  # gen 1 and 2 collected, and the blobs only they used
            store.publish(make_index(n), embedder=EMB)
        assert blobs() == 2 * (len(first.files) + 1)
        assert store.load(embedder=EMB, dim=16)[1].count == 8
