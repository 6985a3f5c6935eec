"""SIGKILL a publisher at random moments: the loader must always open one whole generation."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from retrieval import Example, ExampleIndex, IndexCorruptError, IndexStore

REPO = Path(__file__).resolve().parents[2]
EMB = "fake-embedder@1"

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
    for attempt in range(32):
        proc = subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, str(tmp_path), str(attempt)],
            stdout=subprocess.PIPE,
            env=env,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"ready"
            # random moment inside the publish loop: before, during or between fsyncs/renames
            import time

            time.sleep(rng.uniform(0.0, 0.08))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        if store.current() is not None:
            seen.add(check_consistent(store) % 1000)
    assert len(seen) > 10  # the kills did land after successful publications, many times
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
