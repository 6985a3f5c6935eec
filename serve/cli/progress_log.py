"""Progress lines for long runs whose output is not a terminal (a nightly job's log): products
done / total, the share, this run's rate and the time left, at most once per interval."""

from __future__ import annotations

import time
from collections.abc import Callable


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours}:{minutes:02d}:{seconds:02d}"


class ProgressLog:
    """``advance(n)`` after each batch; a line goes to ``write`` when ``every_s`` seconds have
    passed since the last one (never more often), and :meth:`final` writes the last one."""

    def __init__(
        self, total: int, already: int, write: Callable[[str], None], *, every_s: float,
        label: str = "tagged", clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.already = already  # done by earlier runs: not part of this run's rate
        self.count = 0
        self.every_s = every_s
        self.label = label
        self._write = write
        self._clock = clock
        self._start = clock()
        self._last = self._start
        self._last_count = 0

    def line(self, now: float) -> str:
        done = self.already + self.count
        share = f" ({100 * done / self.total:.1f} %)" if self.total else ""
        elapsed = now - self._start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        left = self.total - done
        eta = f", ETA {_duration(left / rate)}" if rate > 0 and left > 0 else ""
        return f"{self.label} {done:,}/{self.total:,}{share}, {rate:,.1f} products/s, elapsed {_duration(elapsed)}{eta}"

    def advance(self, n: int) -> None:
        self.count += n
        if self.every_s <= 0:
            return
        now = self._clock()
        if now - self._last >= self.every_s:
            self._last, self._last_count = now, self.count
            self._write(self.line(now))

    def final(self) -> None:
        """The last line, unless the last one written already said it all."""
        if self.every_s > 0 and self.count != self._last_count:
            self._write(self.line(self._clock()))
