"""``expected_version=None`` (HTTP ``If-Match: *``): applied to whatever version is current at
commit time, even when other store instances (other processes) commit in between."""

from __future__ import annotations

import threading

import pytest

from taxonomy import AddNode, StaleVersion, TaxonomyStore
from tests.taxonomy.helpers import apparel_document


def test_any_version_edits_from_two_stores_all_apply(database_url: str) -> None:
    url = database_url
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


def test_a_named_version_is_still_checked(database_url: str) -> None:
    store = TaxonomyStore(database_url)
    store.import_document(apparel_document())
    store.apply([AddNode(id="a", name="A", parent=None)], expected_version=None)
    with pytest.raises(StaleVersion) as caught:
        store.apply([AddNode(id="b", name="B", parent=None)], expected_version=1)
    assert (caught.value.expected, caught.value.current) == (1, 2)


def test_twenty_same_version_edits_from_twenty_stores_exactly_one_wins(database_url: str) -> None:
    """HTTP ``If-Match: "1"`` sent to 20 replicas at once: one edit commits, 19 are stale, the
    history holds exactly the winner's edit (no partial batch of a loser)."""
    stores = [TaxonomyStore(database_url) for _ in range(20)]  # 20 "replicas" on one database
    try:
        stores[0].import_document(apparel_document())
        for store in stores:
            store.refresh()
        barrier = threading.Barrier(len(stores))
        outcomes: list[str] = []

        def editor(i: int) -> None:
            barrier.wait(timeout=30)
            batch = [AddNode(id=f"r{i}", name=f"R{i}", parent="food"), AddNode(id=f"r{i}b", name=f"R{i}b", parent=f"r{i}")]
            try:
                stores[i].apply(batch, expected_version=1)
                outcomes.append(f"won:{i}")
            except StaleVersion as exc:
                outcomes.append(f"stale:{exc.current}")
            except Exception as exc:  # anything else is a failure the main thread reports
                outcomes.append(f"error:{exc!r}")

        threads = [threading.Thread(target=editor, args=(i,)) for i in range(len(stores))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        winners = [o for o in outcomes if o.startswith("won:")]
        assert len(outcomes) == 20 and len(winners) == 1, outcomes
        assert sorted(o for o in outcomes if not o.startswith("won:")) == ["stale:2"] * 19, outcomes
        winner = int(winners[0].split(":")[1])
        fresh = TaxonomyStore(database_url)
        assert [v.version for v in fresh.versions()] == [1, 2] and fresh.version == 2
        assert [e.id for e in fresh.edits(2)] == [f"r{winner}", f"r{winner}b"]  # type: ignore[union-attr]
        assert {n.id for n in fresh.current().document.nodes if n.id.startswith("r")} == {f"r{winner}", f"r{winner}b"}
        fresh.close()
    finally:
        for store in stores:
            store.close()
