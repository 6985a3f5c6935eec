"""Which doubtful products are worth a reviewer's time first: the one ordering used by the
review queue (serve) and by the active-learning simulation (evals).

A product's *expected value* of review is the chance its answer is wrong (uncertainty),
raised by how many other waiting products share the same doubt (one correction teaches the
index about all of them) and by the rarity of the categories in doubt (a rare class gains
most from one more example). Within one batch a doubt already picked counts less each time
(diminishing returns), so a batch covers many doubts instead of 200 copies of one.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.contract import TagResult

__all__ = ["ReviewSignal", "doubt_key", "expected_values", "order_for_review"]


@dataclass(frozen=True, slots=True)
class ReviewSignal:
    """What the tagger said about one product, as far as review ordering cares."""

    confidence: float  # the top category's calibrated probability (0 when there is none)
    top: str | None  # the top category id
    runner_up: str | None = None  # the second candidate, if any
    runner_up_confidence: float = 0.0

    @classmethod
    def of(cls, result: TagResult) -> ReviewSignal:
        """The signal of a tagging result: its top tag and the best other candidate weighed."""
        top = result.tags[0] if result.tags else None
        other = next((c for c in result.evidence.candidates if top is None or c.id != top.id), None)
        return cls(
            confidence=top.confidence if top is not None else 0.0,
            top=top.id if top is not None else None,
            runner_up=other.id if other is not None else None,
            runner_up_confidence=other.probability if other is not None else 0.0,
        )


def doubt_key(signal: ReviewSignal) -> str:
    """The doubt a product raises: the unordered pair of its two best candidates."""
    pair = sorted(x for x in (signal.top, signal.runner_up) if x)
    return "|".join(pair) if pair else "-"


def _uncertainty(s: ReviewSignal) -> float:
    # 1 - p1 alone ranks a 0.45/0.44 split like a 0.45/0.05 one; the margin tells them apart
    p1 = min(max(s.confidence, 0.0), 1.0)
    margin = max(p1 - max(s.runner_up_confidence, 0.0), 0.0)
    return 0.5 * (1.0 - p1) + 0.5 * (1.0 - margin)


def _rarity(s: ReviewSignal, class_support: Mapping[str, int]) -> float:
    ids = [x for x in (s.top, s.runner_up) if x]
    if not ids:
        return 1.0
    fewest = min(class_support.get(i, 0) for i in ids)
    return 1.0 / math.sqrt(1.0 + fewest)


def expected_values(
    signals: Sequence[ReviewSignal], class_support: Mapping[str, int] | None = None,
) -> list[float]:
    """Each product's expected value of review, comparable within ``signals``.

    ``class_support``: tagged examples per category id in the current index (absent = 0).
    """
    support = class_support or {}
    shared = Counter(doubt_key(s) for s in signals)
    return [
        _uncertainty(s) * (1.0 + math.log(shared[doubt_key(s)])) * (0.5 + _rarity(s, support))
        for s in signals
    ]


def order_for_review(
    signals: Sequence[ReviewSignal], class_support: Mapping[str, int] | None = None,
    *, limit: int | None = None,
) -> list[int]:
    """Indexes of ``signals``, most valuable first; each further pick of an already picked
    doubt counts ``1 / (1 + times picked)`` of its value (greedy, stable on ties)."""
    values = expected_values(signals, class_support)
    keys = [doubt_key(s) for s in signals]
    want = len(signals) if limit is None else max(0, min(limit, len(signals)))
    # bucket by doubt, each bucket best first; then repeatedly take the best discounted head
    buckets: dict[str, list[int]] = {}
    for i in sorted(range(len(signals)), key=lambda i: (-values[i], i)):
        buckets.setdefault(keys[i], []).append(i)
    heap = [(-values[b[0]], b[0], k) for k, b in buckets.items()]
    heapq.heapify(heap)
    taken: Counter[str] = Counter()
    order: list[int] = []
    while heap and len(order) < want:
        _, i, k = heapq.heappop(heap)
        order.append(i)
        taken[k] += 1
        if taken[k] < len(buckets[k]):
            nxt = buckets[k][taken[k]]
            heapq.heappush(heap, (-values[nxt] / (1.0 + taken[k]), nxt, k))
    return order
