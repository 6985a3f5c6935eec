"""The service's stores (API keys, feedback, the review queue) on SQLite and, in the postgres
tier, on a real PostgreSQL server (``database_url``): the same behaviour, including under races
between several store instances (several replicas sharing one database)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from serve.feedback import FeedbackStore
from serve.keys import KeyStore, LastAdminKey
from serve.review.store import Conflict, EnqueueEntry, ReviewStore


def race(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(0..n-1)`` in n threads released together; results (or exceptions) in order."""
    barrier = threading.Barrier(n)
    out: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            out[i] = work(i)
        except Exception as exc:  # returned for the test to judge
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return out


@pytest.fixture
def keys(database_url: str) -> Iterator[KeyStore]:
    store = KeyStore(database_url)
    yield store
    store.close()


def test_keys_create_verify_revoke(keys: KeyStore, database_url: str) -> None:
    record, key = keys.create(frozenset({"tags"}), "shop")
    other = KeyStore(database_url)  # another replica sees it at once
    try:
        verified = other.verify(key)
        assert verified is not None and verified.id == record.id and verified.scopes == {"tags"}
        assert verified.created_at.tzinfo is not None
        assert other.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
        keys.revoke(record.id)
        assert other.verify(key) is None and other.get(record.id).revoked_at is not None  # type: ignore[union-attr]
        assert [k.id for k in other.all()] == [record.id] and not other.has_active_keys()
    finally:
        other.close()
    with pytest.raises(KeyError):
        keys.revoke("000000000000")


def test_two_replicas_revoking_the_last_two_admin_keys_leave_one(keys: KeyStore, database_url: str) -> None:
    survivor, _ = keys.create(frozenset({"admin"}), "first")
    replicas = [KeyStore(database_url), KeyStore(database_url)]
    try:
        for round_ in range(8):  # a race is timing-dependent: several rounds
            other, _ = keys.create(frozenset({"admin"}), f"round {round_}")
            pair = (survivor, other)
            outcomes = race(2, lambda i, pair=pair: replicas[i].revoke(pair[i].id))  # type: ignore[misc]
            refused = [o for o in outcomes if isinstance(o, LastAdminKey)]
            assert len(refused) == 1 and sum(not isinstance(o, Exception) for o in outcomes) == 1, outcomes
            active = [k for k in keys.all() if k.active]
            assert len(active) == 1, active
            survivor = active[0]
    finally:
        for replica in replicas:
            replica.close()


def test_feedback_records_round_trip_newest_first(database_url: str) -> None:
    store = FeedbackStore(database_url)
    try:
        first = store.add(example_id="p1", verdict="accepted", tags=["shirts"], product={"title": "Shirt ü"},
                          note=None, reviewer="k1", taxonomy_version=3, index_generation="g1")
        second = store.add(example_id="p2", verdict="corrected", tags=["tops"], product={"title": "Top"},
                           note="was shirts", reviewer="k2", taxonomy_version=4, index_generation=None,
                           attribute_values={"color": ["red"]})
        again = FeedbackStore(database_url)  # reopening: the schema is there, nothing to migrate
        records, total = again.list_records()
        again.close()
        assert total == 2 and [r.id for r in records] == [second.id, first.id]
        assert records[0] == second and records[1] == first  # every field, timezone-aware
        page, _ = store.list_records(offset=1, limit=1)
        assert [r.id for r in page] == [first.id]
    finally:
        store.close()


def entry(i: int, category: str = "shirts") -> EnqueueEntry:
    result = {"tags": [{"id": category, "confidence": 0.4}], "needs_review": True,
              "evidence": {"review_reasons": ["low_confidence"], "candidates": [{"id": "tops", "probability": 0.3}]}}
    return EnqueueEntry(product={"id": f"p{i}", "title": f"Product {i}"}, result=result, source="api",
                        taxonomy_version=1, index_generation=None)


@pytest.fixture
def review(database_url: str) -> Iterator[ReviewStore]:
    store = ReviewStore(url=database_url)
    yield store
    store.close()


def test_review_enqueue_dedups_and_counts(review: ReviewStore) -> None:
    report = review.enqueue_many([entry(i) for i in range(5)])
    assert (report.created, report.updated) == (5, 0)
    again = review.enqueue_many([entry(0), entry(1)])
    assert (again.created, again.updated) == (0, 2)
    stats = review.stats()
    assert (stats.open, stats.claimed, stats.open_by_reason) == (5, 0, {"low_confidence": 5})
    items, total = review.list_items()
    assert total == 5 and sorted(i.times_enqueued for i in items) == [1, 1, 1, 2, 2]


def test_reviewers_on_two_replicas_never_claim_one_item_twice(review: ReviewStore, database_url: str) -> None:
    review.enqueue_many([entry(i) for i in range(24)])
    replicas = [ReviewStore(url=database_url) for _ in range(4)]
    try:
        claimed = race(4, lambda i: replicas[i].claim_next(8, by=f"key{i}"))
    finally:
        for replica in replicas:
            replica.close()
    ids = [item.id for batch in claimed for item in batch]
    assert len(ids) == len(set(ids)) == 24, claimed  # every item once: 24 of 4 x 8 asked


def test_two_replicas_deciding_one_item_exactly_one_decides(review: ReviewStore, database_url: str) -> None:
    review.enqueue_many([entry(0)])
    [item] = review.claim_next(1, by="key0")
    replicas = [ReviewStore(url=database_url) for _ in range(2)]
    try:
        outcomes = race(2, lambda i: replicas[i].decide(item.id, "key0", None, "accepted", category="shirts"))
    finally:
        for replica in replicas:
            replica.close()
    assert sum(isinstance(o, Conflict) for o in outcomes) == 1, outcomes
    assert review.get(item.id).status == "accepted"
    assert [e["action"] for e in review.events(item.id)] == ["claim", "accepted"]


def test_review_claims_expire_by_the_databases_clock_not_a_replicas(
    review: ReviewStore, database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A replica whose clock runs an hour ahead can neither take nor decide an item another
    reviewer's 10-minute claim still holds (claims read the database server's clock)."""
    from datetime import timedelta

    import serve.review.store as store_module

    review.enqueue_many([entry(0)])
    [item] = review.claim_next(1, by="alice", ttl_s=600)
    real_now = store_module._now
    monkeypatch.setattr(store_module, "_now", lambda: real_now() + timedelta(hours=1))
    ahead = ReviewStore(url=database_url)
    try:
        with pytest.raises(Conflict) as taken:
            ahead.claim(item.id, by="bob")
        assert taken.value.code == "claimed"
        assert ahead.claim_next(1, by="bob") == []
        with pytest.raises(Conflict):
            ahead.decide(item.id, "bob", None, "accepted", category="shirts")
        assert ahead.stats().claimed == 1
    finally:
        ahead.close()
    assert review.get(item.id).claim is not None and review.get(item.id).claim.by == "alice"  # type: ignore[union-attr]
