"""One writer applies 1,000 edits while 20 readers validate tags against whatever snapshot
they hold: every verdict must match the version the reader reports; versions never go back."""

from __future__ import annotations

import random
import threading
import time

import pytest

from taxonomy import AddNode, DeprecateNode, Snapshot, TagValidator, TaxonomyStore
from tests.taxonomy.helpers import apparel_document

#: (backend, (edits, readers)): a quick run in the default tier (SQLite) and the postgres tier,
#: the full one on SQLite in the slow tier (on PostgreSQL it would take ~100 s of the tier)
CASES = [
    pytest.param("sqlite", (150, 8), id="sqlite-quick"),
    pytest.param("postgresql", (150, 8), id="postgresql-quick", marks=pytest.mark.postgres),
    pytest.param("sqlite", (1000, 20), id="sqlite-full", marks=pytest.mark.slow),
]


def edit_number(k: int) -> AddNode | DeprecateNode:
    """Edit k (0-based) makes version k + 2: every fourth one retires the node added two before."""
    if k % 4 == 3:
        return DeprecateNode(id=f"n{k - 1}", replaced_by=f"n{k - 2}")
    return AddNode(id=f"n{k}", name=f"N{k}", parent="food")


def expected_verdict(version: int, j: int) -> str:
    """What n{j} is at ``version``, computed from the edit schedule alone."""
    applied = version - 1  # edits 0 .. applied-1 are in
    if j >= applied or j % 4 == 3:
        return "unknown_id"
    if j % 4 == 2 and j + 1 < applied:
        return "deprecated"
    return "ok"


@pytest.mark.parametrize(("database_url", "size"), CASES, indirect=["database_url"])
def test_readers_always_see_whole_versions(database_url: str, size: tuple[int, int]) -> None:
    edits, readers = size
    url = database_url
    writer_store = TaxonomyStore(url, checkpoint_every=100)
    writer_store.import_document(apparel_document())
    replicas = [TaxonomyStore(url), TaxonomyStore(url)]  # other "processes" that must refresh()
    done = threading.Event()
    failures: list[str] = []
    checked = [0] * readers
    validator = TagValidator()

    def writer() -> None:
        try:
            for k in range(edits):
                snap = writer_store.apply([edit_number(k)], expected_version=k + 1)
                assert snap.version == k + 2
        except Exception as exc:  # surfaced by the main thread
            failures.append(f"writer: {exc!r}")
        finally:
            done.set()

    def reader(index: int) -> None:
        rng = random.Random(index)
        replica = replicas[index % 2] if index >= readers // 2 else None
        last_version = 0
        for iteration in range(1_000_000):  # bounded; normally ends when the writer is done
            if done.is_set() and iteration > 0:
                break
            if replica is not None and iteration % 10 == 0:
                replica.refresh()
            snap: Snapshot = (replica or writer_store).current()
            if snap.version < last_version:
                failures.append(f"reader {index}: version went back {last_version} -> {snap.version}")
                return
            last_version = snap.version
            applied = snap.version - 1
            candidates = [applied - 1, applied, applied + 1, rng.randrange(0, applied + 1)]
            probes = list(dict.fromkeys(j for j in candidates if j >= 0))
            report = validator.validate(snap, [f"n{j}" for j in probes])
            if report.snapshot_version != snap.version:
                failures.append(f"reader {index}: report of v{report.snapshot_version} for v{snap.version}")
            rules = {e.tag: e.rule for e in report.errors}
            for j in probes:
                got = rules.get(f"n{j}", "ok")
                if got != expected_verdict(snap.version, j):
                    failures.append(f"reader {index}: n{j} at v{snap.version}: {got}")
            checked[index] += 1
            time.sleep(0.001)  # readers are requests, not a busy loop starving the writer

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader, args=(i,)) for i in range(readers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not failures, failures[:10]
    assert writer_store.current().version == edits + 1
    assert min(checked) > 0
    for replica in replicas:
        assert replica.refresh() == edits + 1
        assert replica.current().document == writer_store.current().document
        replica.close()
    writer_store.close()
