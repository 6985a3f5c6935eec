"""``expected_version=None`` (HTTP ``If-Match: *``): applied to whatever version is current at
commit time, even when other store instances (other processes) commit in between."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from taxonomy import AddNode, StaleVersion, TaxonomyStore
from tests.taxonomy.helpers import apparel_document


def test_any_version_edits_from_two_stores_all_apply(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'taxonomy.db'}"
    stores = [TaxonomyStore(url), TaxonomyStore(url)]  # two "processes" on one database
    stores[0].import_document(apparel_document())
    stores[1].refresh()
    barrier = threading.Barrier(4)
    bases: list[int] = []
    failures: list[str] = []

    def writer(w: int) -> None:
        store = stores[w % 2]
        barrier.wait(timeout=30)
        try:
            for k in range(10):
                snap = store.apply([AddNode(id=f"w{w}-{k}", name=f"W{w} {k}", parent="food")], expected_version=None)
                bases.append(snap.version - 1)
        except Exception as exc:  # surfaced by the main thread
            failures.append(repr(exc))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures and not any(t.is_alive() for t in threads), failures
    assert sorted(bases) == list(range(1, 41))  # consecutive versions, each edit applied once
    for store in stores:
        store.refresh()
        assert store.version == 41 and sum(n.id.startswith("w") for n in store.current().document.nodes) == 40


def test_a_named_version_is_still_checked(tmp_path: Path) -> None:
    store = TaxonomyStore(f"sqlite:///{tmp_path / 'taxonomy.db'}")
    store.import_document(apparel_document())
    store.apply([AddNode(id="a", name="A", parent=None)], expected_version=None)
    with pytest.raises(StaleVersion) as caught:
        store.apply([AddNode(id="b", name="B", parent=None)], expected_version=1)
    assert (caught.value.expected, caught.value.current) == (1, 2)
