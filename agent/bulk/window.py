"""A bounded window between a stream of products and a distributed engine: the driver never
holds more than ``capacity`` chunks of products, however long the input.

A producer thread (:meth:`FeedWindow.feed`) cuts the stream into numbered chunks of
``chunk_size`` products and hands each to ``push`` (for Ray: into the feeder actor that the
read tasks take it from), waiting while ``capacity`` chunks are out and not yet released. The
consumer hands back results by sequence number (:meth:`FeedWindow.deliver`), in any order: they
come out in input order (a result that arrives early waits in the reorder buffer, which cannot
outgrow the window: nothing beyond it has been pushed), and a chunk whose results are all out
is released (``on_release``), letting the producer read on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

P = TypeVar("P")
R = TypeVar("R")


class WindowClosedError(RuntimeError):
    """The consumer stopped: the producer stops reading."""


class FeedWindow(Generic[P, R]):
    def __init__(self, products: Iterable[P], *, chunk_size: int, capacity: int) -> None:
        if chunk_size < 1 or capacity < 1:
            raise ValueError("chunk_size and capacity must be at least 1")
        self.chunk_size = chunk_size
        self.capacity = capacity
        self._products = products
        self._chunks: dict[int, list[P]] = {}
        self._released = 0  # chunks below this are done and dropped
        self._pushed = 0
        self._next = 0  # the next sequence number to hand out
        self._pending: dict[int, R] = {}
        self._finished = False  # the producer has read the whole stream
        self._error: BaseException | None = None
        self._closed = False
        self._cond = threading.Condition()

    # ---- producer ------------------------------------------------------------------------
    def feed(self, push: Callable[[int, list[P]], None]) -> None:
        """Read the stream, pushing chunk after chunk (run it in a thread). An exception of the
        stream or of ``push`` is kept for the consumer (:meth:`check`) and re-raised here."""
        try:
            chunk: list[P] = []
            for product in self._products:
                chunk.append(product)
                if len(chunk) == self.chunk_size:
                    self._push(chunk, push)
                    chunk = []
            if chunk:
                self._push(chunk, push)
        except WindowClosedError:
            return
        except BaseException as exc:
            with self._cond:
                self._error = exc
                self._cond.notify_all()
            raise
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def _push(self, chunk: list[P], push: Callable[[int, list[P]], None]) -> None:
        with self._cond:
            while not self._closed and self._pushed >= self._released + self.capacity:
                self._cond.wait()
            if self._closed:
                raise WindowClosedError
            index = self._pushed
            self._chunks[index] = chunk
        push(index, chunk)
        with self._cond:
            self._pushed = index + 1
            self._cond.notify_all()

    # ---- consumer ------------------------------------------------------------------------
    @property
    def products_held(self) -> int:
        """Products in the window now (pushed, not yet released)."""
        with self._cond:
            return sum(len(c) for c in self._chunks.values())

    def check(self) -> None:
        """Re-raise the producer's failure, if any."""
        with self._cond:
            if self._error is not None:
                raise self._error

    def deliver(
        self, seqs: Sequence[int], results: Sequence[R], on_release: Callable[[int], None] | None = None,
    ) -> tuple[list[P], list[R]]:
        """Hand in the results of ``seqs``; returns the ``(products, results)`` now due, in
        input order (empty lists when an earlier result is still out)."""
        self.check()
        released: list[int] = []
        with self._cond:
            for seq, result in zip(seqs, results, strict=True):
                if seq < self._next or seq in self._pending or seq // self.chunk_size not in self._chunks:
                    raise ValueError(f"result for sequence {seq}, not in the window or already delivered")
                self._pending[seq] = result
            out_products: list[P] = []
            out_results: list[R] = []
            while self._next in self._pending:
                chunk_index, offset = divmod(self._next, self.chunk_size)
                chunk = self._chunks[chunk_index]
                out_products.append(chunk[offset])
                out_results.append(self._pending.pop(self._next))
                self._next += 1
                if offset == len(chunk) - 1:
                    del self._chunks[chunk_index]
                    self._released = chunk_index + 1
                    released.append(chunk_index)
            if released:
                self._cond.notify_all()
        if on_release is not None:
            for chunk_index in released:
                on_release(chunk_index)
        return out_products, out_results

    def finish(self) -> None:
        """The engine's output ended: wait for the producer to reach the stream's end (what
        follows the last product is read too: bad lines, the stream's own checks), re-raise its
        failure; everything pushed must have come back."""
        with self._cond:
            # nothing out: the producer is not waiting for room, it reads on to the end
            while not (self._pending or self._chunks or self._finished or self._error is not None or self._closed):
                self._cond.wait()
        self.check()
        with self._cond:
            missing = self._pending or self._chunks or not self._finished
        if missing:
            raise RuntimeError(f"the engine's output ended at sequence {self._next} with products still out")

    def close(self) -> None:
        """Stop the producer (it is waiting, or stops at its next chunk)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
