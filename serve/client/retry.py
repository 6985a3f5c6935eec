"""When to retry a call: 429 and 503 (the service's "not now": rate limit, overload, busy
uploads, not ready, LLM or database down) after the Retry-After the server sent, a connection
that could not be made after a short back-off; within a bounded number of retries and a
bounded total wait, so a call never waits longer than its budget."""

from __future__ import annotations

import email.utils
import math
import time
from dataclasses import dataclass

import httpx


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None
    when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` retries at most, and at most ``budget_s`` seconds of waiting in all for
    one call: a Retry-After that would pass the budget is not waited for (the error is raised
    at once, with its ``retry_after``). Without a Retry-After (a connection refused), the wait
    is ``backoff_s`` doubling up to ``max_backoff_s``."""

    max_retries: int = 5
    budget_s: float = 60.0
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    statuses: frozenset[int] = frozenset({429, 503})

    def delay(self, retry: int, retry_after: float | None, waited: float) -> float | None:
        """Seconds to wait before retry number ``retry`` (1 for the first), having waited
        ``waited`` seconds for this call already; None: give up."""
        if retry > self.max_retries:
            return None
        wait = retry_after if retry_after is not None else min(
            self.max_backoff_s, self.backoff_s * 2 ** (retry - 1)
        )
        if not math.isfinite(wait) or wait < 0 or waited + wait > self.budget_s:
            return None
        return wait


#: no retries at all
NO_RETRY = RetryPolicy(max_retries=0)


class Attempts:
    """The retries of one call under a policy: after each failed attempt, how long to wait
    (None: give up and raise). ``idempotent`` calls are also retried after a connection that
    broke once the request was sent; others only when it could not be made at all."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.retries = 0
        self.waited = 0.0

    def _next(self, retry_after: float | None) -> float | None:
        self.retries += 1
        delay = self.policy.delay(self.retries, retry_after, self.waited)
        if delay is not None:
            self.waited += delay
        return delay

    def after_status(self, status: int, retry_after: str | None) -> float | None:
        if status not in self.policy.statuses:
            return None
        return self._next(parse_retry_after(retry_after))

    def after_transport_error(self, exc: Exception, *, idempotent: bool) -> float | None:
        if not (idempotent or isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)):
            return None
        return self._next(None)
