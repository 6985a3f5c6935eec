"""The jobs store on both backends (``database_url``: SQLite here, PostgreSQL in the postgres
tier), several instances (engines) on one database as several replicas have: a batch lease
is exclusive under concurrent claimers, an expired lease is taken again and the old holder
can no longer write, a result is never written twice, results come in input order, cancel
and delete work from another instance, and jobs of the older file layout are imported."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from agent.contract import TagResult
from serve.database import open_engine
from serve.jobs import JobInputParser, JobItem, JobStore, JobWorker, Lease, ResultRow
from serve.jobs.store import batches_table, jobs_table, metadata, result_line, results_table
from serve.metrics import Metrics
from tests.serve.test_jobs import jsonl


@pytest.fixture
def stores(database_url: str, tmp_path: Path) -> Iterator[list[JobStore]]:
    """Three instances on one database, each with its own staging directory (a replica's)."""
    made = [JobStore(database_url, tmp_path / f"r{n}" / "jobs", batch_size=2) for n in range(3)]
    yield made
    for store in made:
        store.close()


def make_job(store: JobStore, n: int, owner: str = "owner") -> str:
    staged = store.stage()
    staged.write(JobInputParser(max_items=10_000, max_line_bytes=4096, max_depth=64).feed(jsonl(n)))
    staged.seal()
    job, created = store.commit(staged, owner, request_sha256="0" * 64)
    assert created
    return job.id


def rows(lease: Lease) -> list[ResultRow]:
    return [
        ResultRow(seq, item.custom_id, True, result_line(item.custom_id, {"tags": []}, None, False))
        for seq, item in lease.parsed()
    ]


def test_a_batch_lease_is_exclusive_under_concurrent_claimers(stores: list[JobStore]) -> None:
    job = make_job(stores[0], 60)  # 30 batches
    claimed: list[tuple[str, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def claimer(store: JobStore, name: str) -> None:
        start.wait()
        while (lease := store.claim(name, 60)) is not None:
            with lock:
                claimed.append((lease.job_id, lease.batch))

    threads = [threading.Thread(target=claimer, args=(stores[n % 3], f"w{n}")) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(claimed) == [(job, b) for b in range(30)]  # each batch once, none left
    assert stores[1].claim("late", 60) is None


def test_an_expired_lease_is_taken_again_and_its_old_holder_cannot_write(stores: list[JobStore]) -> None:
    a, b = stores[0], stores[1]
    job = make_job(a, 4)  # batches 0 and 1
    t = datetime.now(UTC).timestamp()
    first = a.claim("a", 10, now=t)
    assert first is not None and first.batch == 0 and [s for s, _ in first.items] == [0, 1]
    second = b.claim("b", 10, now=t + 1)
    assert second is not None and second.batch == 1  # batch 0's lease runs
    assert a.extend(first, 10, now=t + 5)  # the heartbeat: now held until t + 15
    assert b.claim("b", 10, now=t + 10.5) is None  # both leases run
    retaken = b.claim("b", 10, now=t + 16)  # both expired: b takes batch 0 (the oldest) again
    assert retaken is not None and retaken.batch == 0 and retaken.token != first.token
    assert not a.extend(first, 10)  # a learns it lost the batch
    assert a.complete(first, rows(first)) is None  # and cannot write it
    assert b.complete(retaken, rows(retaken)) == "written"
    assert c_state(stores[2], job) == ("queued", 2)  # (the worker, not the store, marks it running)
    assert b.complete(second, rows(second)) == "completed"  # expired but not taken: still b's to write
    record = stores[2].get(job)
    assert record is not None and record.state == "completed" and record.succeeded == 4


def test_leases_run_on_the_databases_clock_so_a_skewed_replica_neither_steals_nor_keeps_one(
    stores: list[JobStore], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Replicas on machines whose clocks disagree: a replica an hour ahead does not take a
    batch whose lease runs, and one an hour behind neither loses its own by extending it (the
    lease would end an hour ago) nor keeps it past ``lease_s`` without heartbeats. The replicas'
    clock is injected where the store would read it (``serve.jobs.store.time``)."""
    import serve.jobs.store as store_module

    a, b = stores[0], stores[1]
    make_job(a, 2)  # one batch
    real = time.time

    def clock(skew: float) -> None:
        monkeypatch.setattr(store_module, "time", type("SkewedTime", (), {
            "time": staticmethod(lambda: real() + skew), "monotonic": staticmethod(time.monotonic),
            "sleep": staticmethod(time.sleep),
        }))

    held = a.claim("a", 30)
    assert held is not None
    clock(+3600)  # b's machine an hour ahead: by its clock the lease ended long ago
    assert b.claim("b", 30) is None
    clock(-3600)  # a's machine an hour behind: its heartbeat must not end the lease an hour ago
    assert a.extend(held, 30)
    clock(0)
    assert b.claim("b", 30) is None  # still a's
    assert a.extend(held, 0.3)  # a short lease, then no heartbeat: it expires by the database's clock
    clock(-3600)  # even for a replica whose clock lags
    deadline = time.monotonic() + 10
    while (taken := b.claim("b", 30)) is None:
        assert time.monotonic() < deadline, "the expired lease was never taken"
        time.sleep(0.05)
    assert taken.batch == held.batch and taken.token != held.token
    assert a.complete(held, rows(held)) is None and b.complete(taken, rows(taken)) == "completed"


def c_state(store: JobStore, job_id: str) -> tuple[str, int]:
    record = store.get(job_id)
    assert record is not None
    return record.state, record.succeeded


def test_a_result_is_never_written_twice(stores: list[JobStore], database_url: str) -> None:
    store = stores[0]
    job = make_job(store, 4)
    lease = store.claim("a", 60)
    assert lease is not None
    assert store.complete(lease, rows(lease)) == "written"
    assert store.complete(lease, rows(lease)) is None  # the same batch again: refused, nothing added
    assert [r.custom_id for r in store.results(job)] == ["c0", "c1"]
    record = store.get(job)
    assert record is not None and record.succeeded == 2
    engine = open_engine(database_url)
    try:
        with pytest.raises(IntegrityError), engine.begin() as conn:  # the database refuses it too
            conn.execute(insert(results_table).values(job_id=job, seq=7, custom_id="c0", ok=1, line="{}"))
    finally:
        engine.dispose()


def test_results_come_in_input_order_whichever_batch_is_written_first(stores: list[JobStore]) -> None:
    a, b = stores[0], stores[1]
    job = make_job(a, 5)  # batches [0, 1], [2, 3], [4]
    first, second = a.claim("a", 60), b.claim("b", 60)
    assert first is not None and second is not None
    assert b.complete(second, rows(second)) == "written"
    assert list(a.read_results(job)) == []  # line 0 has no result yet: nothing is final
    assert a.complete(first, rows(first)) == "written"
    lines = [json.loads(x)["custom_id"] for x in b.read_results(job)]
    assert lines == ["c0", "c1", "c2", "c3"]
    assert [json.loads(x)["custom_id"] for x in b.read_results(job, offset=3)] == ["c3"]
    last = a.claim("a", 60)
    assert last is not None and a.complete(last, rows(last)) == "completed"
    assert [json.loads(x)["custom_id"] for x in b.read_results(job, offset=4)] == ["c4"]


def test_cancel_and_delete_from_another_instance(stores: list[JobStore]) -> None:
    a, b, c = stores
    job = make_job(a, 6)
    held = a.claim("a", 60)
    done = c.claim("c", 60)
    assert held is not None and done is not None and c.complete(done, rows(done)) == "written"
    assert b.transition(job, "cancelled", only_from=frozenset({"queued", "running"}))
    assert a.complete(held, rows(held)) is None  # the worker of another replica writes nothing after it
    assert a.claim("a", 60) is None  # nor takes the rest
    record = a.get(job)
    assert record is not None and record.state == "cancelled" and record.succeeded == 2
    # finished: every result written, in input order, though line 0 has none
    assert [json.loads(x)["custom_id"] for x in c.read_results(job)] == ["c2", "c3"]
    b.delete(job)
    assert a.get(job) is None and list(a.read_results(job)) == [] and a.results(job) == []
    assert a.list_jobs(None)[1] == 0


def test_jobs_of_the_file_layout_are_imported(database_url: str, tmp_path: Path) -> None:
    """An older tagsmith's ``jobs.db`` row + ``job_<id>/input.jsonl`` and ``results.jsonl`` (a
    torn last line included) become a running job with its results; the rest is tagged. Into
    the configured database (here) or the data directory's jobs.db itself (next test)."""
    check_import(tmp_path / "jobs", database_url)


def test_jobs_of_the_file_layout_are_imported_in_place(tmp_path: Path) -> None:
    check_import(tmp_path / "jobs", None)


def check_import(staging: Path, database_url: str | None) -> None:
    staging.mkdir()
    legacy = open_engine(staging / "jobs.db")
    metadata.tables["jobs"].create(legacy)  # an older tagsmith's database: its jobs table only
    job_id = "job_0123456789abcdef01234567"
    with legacy.begin() as conn:
        conn.execute(insert(jobs_table).values(
            id=job_id, owner="owner", state="running", created_at=datetime.now(UTC), total=5,
            succeeded=1, failed=0, request_sha256="0" * 64,
        ))
    legacy.dispose()
    directory = staging / job_id
    directory.mkdir()
    (directory / "input.jsonl").write_bytes(jsonl(5))
    done = [result_line(f"c{n}", {"tags": []}, None, False) for n in (0, 1, 3)]
    (directory / "results.jsonl").write_text("\n".join(done) + '\n{"custom_id": "c4", "res')
    store = JobStore(database_url or staging / "jobs.db", staging, batch_size=2)
    try:
        assert store.import_files() == 1 and not directory.exists()
        assert store.import_files() == 0
        record = store.get(job_id)
        assert record is not None and record.state == "running" and record.succeeded == 3 and record.total == 5
        assert [json.loads(x)["custom_id"] for x in store.read_results(job_id)] == ["c0", "c1"]  # c2 missing
        claimed = [store.claim("w", 60) for _ in range(3)]
        assert [[s for s, _ in lease.items] for lease in claimed if lease is not None] == [[2], [4]]
        for lease in claimed:
            if lease is not None:
                store.complete(lease, rows(lease))
        record = store.get(job_id)
        assert record is not None and record.state == "completed" and record.succeeded == 5
        assert [r.custom_id for r in store.results(job_id)] == [f"c{n}" for n in range(5)]
    finally:
        store.close()


def test_two_workers_share_a_job_each_custom_id_once(stores: list[JobStore], database_url: str) -> None:
    """Two workers (two replicas' worker threads, each with its own store) on one job: both
    take batches, the heartbeat keeps a slow batch's short lease, every line is written once."""
    job = make_job(stores[0], 40)  # 20 batches

    def tag(items: Sequence[JobItem]) -> list[TagResult]:
        time.sleep(2.5 if items[0].custom_id == "c0" else 0.01)  # a batch outlasting its lease: the heartbeat keeps it
        raise RuntimeError("no tagger here")  # an error line per item: enough to count

    # a heartbeat every lease_s / 3: a stall of over 1.3 s (not 0.67 s, as with a 1 s lease) on
    # busy cores would let the other worker retake the slow batch
    workers = [JobWorker(store, tag, Metrics(), lease_s=2.0, poll_s=0.02, name=f"w{n}") for n, store in enumerate(stores[:2])]
    for worker in workers:
        worker.start()
    try:
        deadline = time.monotonic() + 60
        while (record := stores[2].get(job)) is not None and record.state != "completed":
            assert time.monotonic() < deadline, record
            time.sleep(0.05)
    finally:
        for worker in workers:
            worker.stop()
    assert record is not None and record.failed == 40
    assert [r.custom_id for r in stores[2].results(job)] == [f"c{n}" for n in range(40)]
    engine = open_engine(database_url)
    try:
        with engine.connect() as conn:
            owners = conn.execute(select(batches_table.c.lease_owner, batches_table.c.claims)).all()
    finally:
        engine.dispose()
    assert {owner for owner, _ in owners} == {"w0", "w1"} and all(claims == 1 for _, claims in owners)
