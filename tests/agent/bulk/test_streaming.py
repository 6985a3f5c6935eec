"""The bulk path's bounded memory, as logic: the feed window never reads further ahead than its
capacity (a stream that fails when read too far proves it), results come out in input order
whatever order they arrive in, and the id set costs 16 bytes per id. No Ray here: the engine
that uses the window runs in tests/serve/test_tag_file_ray.py (process tier)."""

from __future__ import annotations

import contextlib
import json
import queue
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.bulk import IdSet, InputChangedError, plan_file, scan_file, stream_todo
from agent.bulk.ids import DIGEST_BYTES, id_digest
from agent.bulk.window import FeedWindow

CHUNK, CAPACITY, N = 5, 3, 203


class Reader:
    """A stream of N numbers that fails if it is read more than ``bound`` ahead of what was
    delivered (the window's promise), and records how far ahead it ever got."""

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.read = 0
        self.delivered = 0
        self.max_ahead = 0

    def __iter__(self) -> Iterator[int]:
        for i in range(N):
            ahead = i - self.delivered
            if ahead >= self.bound:
                raise AssertionError(f"read item {i} with only {self.delivered} delivered")
            self.max_ahead = max(self.max_ahead, ahead + 1)
            self.read = i + 1
            yield i


def _run(window: FeedWindow[int, str], reader: Reader, rng: random.Random) -> list[int]:
    """An engine: takes pushed chunks, answers them in a shuffled order across the chunks it has."""
    pushed: queue.Queue[tuple[int, list[int]]] = queue.Queue()

    def feed() -> None:
        with contextlib.suppress(AssertionError):  # the reader's complaint reaches the consumer
            window.feed(lambda i, chunk: pushed.put((i, chunk)))

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    deadline = time.monotonic() + 10
    while reader.read < min(N, reader.bound) and feeder.is_alive():  # let it run as far ahead as it will
        assert time.monotonic() < deadline, reader.read
        time.sleep(0.001)
    out: list[int] = []
    released: list[int] = []
    in_hand: list[int] = []
    while len(out) < N:
        with contextlib.suppress(queue.Empty):
            if not in_hand:
                index, chunk = pushed.get(timeout=10)
                in_hand.extend(range(index * CHUNK, index * CHUNK + len(chunk)))
            while True:  # and whatever else is there
                index, chunk = pushed.get_nowait()
                in_hand.extend(range(index * CHUNK, index * CHUNK + len(chunk)))
        assert window.products_held <= CAPACITY * CHUNK
        rng.shuffle(in_hand)
        half = max(1, len(in_hand) // 2)
        answer, in_hand = in_hand[:half], in_hand[half:]
        products, results = window.deliver(answer, [f"r{s}" for s in answer], on_release=released.append)
        assert results == [f"r{p}" for p in products]  # each result with its own product
        out.extend(products)
        reader.delivered = len(out)
    feeder.join(timeout=5)
    window.finish()
    assert released == list(range(-(-N // CHUNK)))  # each chunk released once, in order
    return out


def test_window_reads_at_most_its_capacity_ahead_and_restores_input_order() -> None:
    # the producer may hold CAPACITY chunks out plus the one it is filling
    reader = Reader(bound=(CAPACITY + 1) * CHUNK)
    window: FeedWindow[int, str] = FeedWindow(reader, chunk_size=CHUNK, capacity=CAPACITY)
    assert _run(window, reader, random.Random(7)) == list(range(N))
    assert reader.read == N and reader.max_ahead == (CAPACITY + 1) * CHUNK  # the bound was reached, not exceeded


def test_a_window_too_small_for_the_stream_bound_fails_the_reader() -> None:
    # the same engine against a stricter reader: the window reads further, the stream says so
    reader = Reader(bound=CAPACITY * CHUNK)
    window: FeedWindow[int, str] = FeedWindow(reader, chunk_size=CHUNK, capacity=CAPACITY)
    with pytest.raises(AssertionError, match="delivered"):
        _run(window, reader, random.Random(7))


def test_window_rejects_unknown_or_repeated_results_and_stops_its_producer() -> None:
    window: FeedWindow[int, str] = FeedWindow(iter(range(100)), chunk_size=CHUNK, capacity=1)
    pushed: list[int] = []
    feeder = threading.Thread(target=lambda: window.feed(lambda i, chunk: pushed.append(i)), daemon=True)
    feeder.start()
    while not pushed:
        threading.Event().wait(0.01)
    assert window.deliver([1, 0], ["b", "a"]) == ([0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="already delivered"):
        window.deliver([0], ["again"])
    with pytest.raises(ValueError, match="not in the window"):
        window.deliver([CHUNK], ["beyond"])  # chunk 1 is not out: capacity 1, chunk 0 not done
    window.close()
    feeder.join(timeout=5)
    assert not feeder.is_alive() and pushed == [0]


def test_window_hands_the_streams_failure_to_the_consumer() -> None:
    def broken() -> Iterator[int]:
        yield 1
        raise InputChangedError("changed")

    window: FeedWindow[int, str] = FeedWindow(broken(), chunk_size=CHUNK, capacity=2)
    with pytest.raises(InputChangedError):
        window.feed(lambda i, chunk: None)
    with pytest.raises(InputChangedError):
        window.check()


def test_id_set_is_16_bytes_per_id_and_exact_on_membership() -> None:
    ids = [f"sku-{i}" for i in range(5000)] + ["é", ""]
    done = IdSet.of(ids + ids[:100])  # repeats kept once
    assert len(done) == len(ids) and done.nbytes == DIGEST_BYTES * len(ids)
    assert all(i in done for i in ids[::97]) and "sku-5000" not in done and 7 not in done
    assert done.has_digest(id_digest("é")) and IdSet.of([]).nbytes == 0 and "x" not in IdSet.of([])
    assert IdSet.of(ids[:10]).count_in(done) == 10 and IdSet.of(["a", "sku-1"]).count_in(done) == 1


def _write(path: Path, rows: list[object]) -> None:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")


def test_scan_counts_and_the_stream_reports_bad_lines_in_file_order(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    _write(src, [{"id": "a", "title": "x"}, "{bad", {"id": "b", "title": "y"}, {"id": "a", "title": "again"},
                 {"id": "c", "title": "z"}, {"id": "b", "title": "b twice"}, {"id": "a", "title": "a thrice"}])
    done = IdSet.of(["b", "elsewhere"])
    scan = scan_file(src, done)
    assert (scan.products, scan.done, scan.todo, scan.bad) == (3, 1, 2, 4)
    bad: list[dict[str, object]] = []
    assert [p.id for p in stream_todo(src, done, scan, bad.append)] == ["a", "c"]
    assert [b["line"] for b in bad] == [2, 4, 6, 7]
    assert bad[1]["error"] == "duplicate id 'a' (first on line 1)" and bad[2]["error"] == "duplicate id 'b' (first on line 3)"
    assert plan_file(src, ["b"]).bad == bad


def test_a_file_changed_between_the_passes_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    _write(src, [{"id": "a", "title": "x"}, {"id": "b", "title": "y"}])
    scan = scan_file(src, IdSet.of([]))
    _write(src, [{"id": "a", "title": "x"}, {"id": "b", "title": "y"}, {"id": "c", "title": "z"}])
    with pytest.raises(InputChangedError, match="more products than counted"):
        list(stream_todo(src, IdSet.of([]), scan, lambda bad: None))
    _write(src, [{"id": "a", "title": "x"}])
    with pytest.raises(InputChangedError, match="1 products left to tag, 2 counted"):
        list(stream_todo(src, IdSet.of([]), scan, lambda bad: None))


def test_finish_waits_for_the_stream_end_and_its_verdict() -> None:
    """The last results can arrive before the producer has read past the last product: finish()
    waits for the stream's end and reports what it found there."""
    gate = threading.Event()

    def stream() -> Iterator[int]:
        yield 0
        gate.wait(5)  # the tail of the file (bad lines, the count check) read late
        raise InputChangedError("fewer products than counted")

    window: FeedWindow[int, str] = FeedWindow(stream(), chunk_size=1, capacity=2)
    feeder = threading.Thread(target=_quiet_feed, args=(window,), daemon=True)
    feeder.start()
    while window.products_held == 0:
        time.sleep(0.001)
    assert window.deliver([0], ["r0"]) == ([0], ["r0"])
    threading.Timer(0.05, gate.set).start()
    with pytest.raises(InputChangedError):
        window.finish()
    feeder.join(timeout=5)


def _quiet_feed(window: FeedWindow[int, str]) -> None:
    with contextlib.suppress(InputChangedError):
        window.feed(lambda i, chunk: None)
