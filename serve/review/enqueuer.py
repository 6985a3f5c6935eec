"""Enqueue flagged results without slowing the tagging response: a bounded buffer drained
by one background thread, a batch per transaction.

:meth:`ReviewEnqueuer.submit` never blocks and never raises: when the buffer is full the
entries are dropped (counted, logged once per burst); when the store write fails the batch
is logged and dropped (the tags were returned long ago). :meth:`flush` waits until what was
submitted before it is written (tests, shutdown).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence

from serve.review.store import EnqueueEntry, ReviewStore

log = logging.getLogger("tagsmith.review")

#: entries written per transaction
BATCH = 256
#: how long the writer waits for more entries before writing a batch (one transaction, one
#: fsync, for a burst of single-product requests instead of one each)
LINGER_S = 0.05


class ReviewEnqueuer:
    def __init__(
        self, store: ReviewStore, *, max_pending: int = 10_000, count: Callable[[str, int], None] | None = None,
    ) -> None:
        """``count(outcome, n)``: told how many entries were ``written``, ``dropped`` or ``failed``."""
        self.store = store
        self._count = count or (lambda outcome, n: None)
        self.max_pending = max_pending
        self._buffer: deque[EnqueueEntry] = deque()
        self._cond = threading.Condition()
        self._busy = False  # a batch taken from the buffer is being written
        self._stopping = False
        self.dropped = 0  # entries lost to a full buffer
        self.failed = 0  # entries lost to a failed write
        self._warned = False
        self._thread = threading.Thread(target=self._main, name="tagsmith-review-enqueue", daemon=True)
        self._thread.start()

    def submit(self, entries: Sequence[EnqueueEntry]) -> int:
        """Hand entries over for writing; returns how many were accepted (the rest: buffer full)."""
        if not entries:
            return 0
        with self._cond:
            if self._stopping:
                return 0
            room = max(0, self.max_pending - len(self._buffer))
            accepted = list(entries[:room])
            self._buffer.extend(accepted)
            lost = len(entries) - len(accepted)
            if lost:
                self.dropped += lost
                self._count("dropped", lost)
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "review queue buffer full (%d entries): flagged results are not enqueued "
                        "until it drains", self.max_pending,
                    )
            else:
                self._warned = False
            self._cond.notify_all()
        return len(accepted)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the buffer is written; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._buffer and not self._busy, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is buffered (up to ``timeout``), then stop."""
        self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _main(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._buffer or self._stopping)
                if not self._buffer:
                    return  # stopping, nothing left
                if not self._stopping and len(self._buffer) < BATCH:
                    self._cond.wait_for(lambda: len(self._buffer) >= BATCH or self._stopping, LINGER_S)
                batch = [self._buffer.popleft() for _ in range(min(BATCH, len(self._buffer)))]
                self._busy = True
            try:
                self.store.enqueue_many(batch)
                self._count("written", len(batch))
            except Exception:
                self.failed += len(batch)
                self._count("failed", len(batch))
                log.exception("review queue write failed; %d flagged result(s) not enqueued", len(batch))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
