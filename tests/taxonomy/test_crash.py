"""Kill a writing process with SIGKILL at random points, many times: the store must reopen
intact, keep every acknowledged version, and never show half of an edit batch.

The writer is forked from this (already warmed-up) process rather than started fresh, so 60
kills cost seconds, not minutes of interpreter start-up; it is still a separate process that
gets SIGKILL while it holds the SQLite write lock, commits, or checkpoints.
"""

from __future__ import annotations

import os
import random
import select
import signal
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select as sql_select

from taxonomy import AddNode, AddSynonym, RenameNode, TaxonomyStore, apply_edits
from taxonomy.schema import checkpoints_table
from tests.taxonomy.helpers import apparel_document

KILLS = 60
CHECKPOINT_EVERY = 7
#: every WAIT_EVERY-th kill first reads WAIT_FOR acknowledged versions, then sleeps its random
#: delay: so many commits are guaranteed (the totals asserted below), whatever the machine's
#: load, while every kill still lands at a random point (the other runs may die before any
#: commit, as on a busy machine they often do)
WAIT_EVERY, WAIT_FOR = 2, 3

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.process,  # forks writers and SIGKILLs them
]


def batch_for(version: int) -> list[AddNode | RenameNode | AddSynonym]:
    """Three edits that are only consistent together: a half-applied batch is visible."""
    node = f"c{version}"
    return [
        AddNode(id=node, name=f"Pending {version}", parent="food"),
        RenameNode(id=node, name=f"Done {version}"),
        AddSynonym(id=node, synonym=f"batch {version}"),
    ]


def writer_child(url: str) -> None:
    """Runs in the forked child: apply batches forever, print each acknowledged version."""
    try:
        store = TaxonomyStore(url, checkpoint_every=CHECKPOINT_EVERY)
        os.write(1, b"ready\n")
        for _ in range(100_000):
            version = store.version
            snap = store.apply(batch_for(version + 1), expected_version=version)
            os.write(1, f"{snap.version}\n".encode())  # only after commit: acknowledged
    finally:
        os._exit(0)


def run_and_kill(url: str, delay: float, wait_for: int = 0) -> list[int]:
    """Fork a writer, wait for its "ready" (and ``wait_for`` acknowledged versions), sleep
    ``delay``, SIGKILL it; the versions it acknowledged."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read_end)
        os.dup2(write_end, 1)
        writer_child(url)
    os.close(write_end)
    output = b""
    deadline = time.monotonic() + 60
    try:
        if delay >= 0:  # a negative delay kills the child while it is still opening the store
            while output.count(b"\n") < 1 + wait_for and time.monotonic() < deadline:
                ready, _, _ = select.select([read_end], [], [], 1.0)
                if ready:
                    chunk = os.read(read_end, 65536)
                    if not chunk:
                        break
                    output += chunk
            time.sleep(delay)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    while chunk := os.read(read_end, 65536):
        output += chunk
    os.close(read_end)
    lines = output.decode().split("\n")[:-1]  # a line without "\n" was never fully printed
    return [int(line) for line in lines if line != "ready"]


def check_intact(url: str, acknowledged: list[int]) -> int:
    with TaxonomyStore(url) as store:
        head = store.version
        assert acknowledged == sorted(acknowledged)
        assert not acknowledged or head >= acknowledged[-1], "an acknowledged edit was lost"
        versions = {v.version: v for v in store.versions()}
        assert set(versions) == set(range(1, head + 1))
        assert all(versions[v].edit_count == 3 for v in range(2, head + 1))
        snap = store.current()
        for version in range(2, head + 1):
            node = snap.node(f"c{version}")
            assert (node.name, node.synonyms) == (f"Done {version}", (f"batch {version}",))
        assert len(snap) == 8 + head - 1
        return head


def test_store_survives_sigkill_at_random_points(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'taxonomy.db'}"
    with TaxonomyStore(url) as store:
        store.import_document(apparel_document())
    rng = random.Random(20240701)
    sys.stdout.flush()
    total_acknowledged = waited = 0
    for kill in range(KILLS):
        delay = -1.0 if rng.random() < 0.1 else rng.uniform(0, 0.1)
        wait_for = WAIT_FOR if kill % WAIT_EVERY == 0 and delay >= 0 else 0
        acknowledged = run_and_kill(url, delay, wait_for)
        assert len(acknowledged) >= wait_for, "the writer died before acknowledging its commits"
        total_acknowledged += len(acknowledged)
        waited += wait_for
        check_intact(url, acknowledged)
    assert waited > KILLS  # by construction: a run whose kills land among many commits
    assert total_acknowledged >= waited
    print(f"{total_acknowledged} acknowledged versions over {KILLS} kills ({waited} waited for)")

    # checkpoints (written while being killed) equal a replay of the whole log from the import
    with TaxonomyStore(url) as store:
        head = store.version
        with store._engine.connect() as conn:
            checkpoints = conn.execute(sql_select(checkpoints_table.c.version)).scalars().all()
        # one per checkpoint_every versions after the import's, none lost to a kill
        assert len(checkpoints) == 1 + (head - 1) // CHECKPOINT_EVERY and head > total_acknowledged >= waited
        assert len(checkpoints) > 10
        sampled = sorted({*checkpoints[:: max(1, len(checkpoints) // 15)], checkpoints[-1]})
        replayed, pending = store.snapshot(1), []
        for version in range(2, head + 1):
            pending.extend(store.edits(version))
            if version in sampled:
                replayed, pending = apply_edits(replayed, pending, version), []
                assert replayed.document == store.snapshot(version).document
