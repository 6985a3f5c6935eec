"""Splitting a large input into the batches the server takes (``tag_many``)."""

from __future__ import annotations

#: the server's default limits.max_batch_items, used until a server says otherwise
DEFAULT_MAX_BATCH_ITEMS = 64


def spans(n: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) of consecutive batches of at most ``size`` covering ``range(n)``, in order."""
    if size < 1:
        raise ValueError(f"a batch holds at least one product, not {size}")
    return [(start, min(start + size, n)) for start in range(0, n, size)]
