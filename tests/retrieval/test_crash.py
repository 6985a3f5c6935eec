"""SIGKILL a publisher at random moments: the loader must always open one whole generation."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from retrieval import Example, ExampleIndex, IndexCorruptError, IndexStore

REPO = Path(__file__).resolve().parents[2]
EMB = "fake-embedder@1"
#: every WAIT_EVERY-th publisher is killed only after a publication it completed (then at a
#: random moment, as the others): however slow the machine, those publications are
#: guaranteed, and each must be current after the kill
WAIT_EVERY = 3

PUBLISHER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from retrieval.examples import Example
    from retrieval.index import ExampleIndex
    from retrieval.store import IndexStore

    store = IndexStore(sys.argv[1])
    marker = int(sys.argv[2])
    rng = np.random.default_rng(marker)
    print("ready", flush=True)
    while True:
        n = 50 + marker % 13  # every generation has its own size and its own tag
        index = ExampleIndex(16)
        vectors = rng.standard_normal((n, 16)).astype(np.float32)
        index.upsert([Example(f"p{i}", f"m{marker}", tags=(f"m{marker}",)) for i in range(n)], vectors)
        store.publish(index, embedder="fake-embedder@1", extra={"marker": marker, "n": n})
        print("published", flush=True)  # only once it is current
        marker += 1000
    """
)


def check_consistent(store: IndexStore) -> int:
    index, manifest = store.load(embedder=EMB, dim=16)
    marker = manifest.extra["marker"]
    assert len(index) == manifest.extra["n"] == 50 + marker % 13
    assert {ex.tags for ex in index} == {(f"m{marker}",)}  # nothing of another generation
    return int(marker)


@pytest.mark.process
def test_sigkill_during_publication_never_exposes_a_mix(tmp_path: Path) -> None:
    store = IndexStore(tmp_path)
    rng = random.Random(1234)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    seen: set[int] = set()
    published: set[int] = set()  # attempts that completed a publication before their kill
    for attempt in range(32):
        proc = subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, str(tmp_path), str(attempt)],
            stdout=subprocess.PIPE,
            env=env,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"ready"
            if attempt % WAIT_EVERY == 0:
                assert proc.stdout.readline().strip() == b"published"
                published.add(attempt)
            # random moment inside the publish loop: before, during or between fsyncs/renames
            time.sleep(rng.uniform(0.0, 0.08))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        if store.current() is not None:
            seen.add(check_consistent(store) % 1000)
    # a publication completed before the kill is what the loader opens after it
    assert published <= seen and len(published) > 10, (sorted(published), sorted(seen))
    # orphans of killed publications (renamed, never made current) pile up while every
    # publication is killed (a loaded machine); the next complete one collects them all
    index = ExampleIndex(16)
    index.upsert([Example("p0", "m", tags=("m",))], np.ones((1, 16), dtype=np.float32))
    store.publish(index, embedder=EMB, extra={"marker": 999, "n": 1})
    assert len(store.generations()) <= store.keep
    assert not list(tmp_path.glob(".staging-*"))


@pytest.mark.process
def test_truncated_generation_is_refused_not_loaded(tmp_path: Path) -> None:
    store = IndexStore(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", PUBLISHER.replace("while True", "for _ in range(2)"), str(tmp_path), "3"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    current = tmp_path / store.manifest().generation / "examples.jsonl"
    current.write_bytes(current.read_bytes()[:-10])
    with pytest.raises(IndexCorruptError):
        store.load(embedder=EMB, dim=16)
