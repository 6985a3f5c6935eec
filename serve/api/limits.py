"""Request limits: body size (413) and a per-key token-bucket rate limit (429).

The body limit is checked twice: against ``Content-Length`` before anything is read, and
while reading (a chunked upload has no length), so no handler ever buffers more than the
limit. Job uploads (JSONL) get their own, larger limit.

The rate limit counts cost, not requests: most requests take one token, the reads that can
cost much more CPU take several (:data:`ROUTE_COSTS`), so the CPU one key can spend stays
bounded whichever routes it calls. (Old-version rebuilds are also bounded across all keys:
``limits.history_reads_at_once``, in the taxonomy service.)

Buckets live in the process's memory: with several replicas each keeps its own, so a key
whose requests a load balancer spreads over N replicas may spend up to N times the rate.
Deliberately: a bucket shared through the database would cost a write (and a round trip)
per request, more than most requests cost themselves; set ``limits.rate_per_s`` to the
intended rate divided by N instead (docs/deploy.md).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.api.errors import error_body

#: (method, path, tokens; the path's sub-paths too): reads whose worst case costs several
#: times a typical request. Search scans the taxonomy when its index has no short cut (queries
#: of one-letter words, a fresh version's index build); the version log reads the database;
#: diff and migration-map may rebuild two old versions (~0.3 s each on the 10k-node default
#: taxonomy) before comparing them; the review export reads every item. Everything else costs 1.
ROUTE_COSTS: tuple[tuple[str, str, float], ...] = (
    ("GET", "/v1/taxonomy/search", 2.0),
    ("GET", "/v1/taxonomy/versions", 2.0),
    ("GET", "/v1/taxonomy/diff", 10.0),
    ("GET", "/v1/taxonomy/migration-map", 10.0),
    # the whole review queue, streamed (~2,000 items a second on 2 busy cores)
    ("GET", "/v1/review/export", 10.0),
)
#: node and attribute reads pinned to a version (``?version=``): an old version may have to be rebuilt
PINNED_VERSION_COST = 5.0
_PINNABLE = ("/v1/taxonomy/nodes", "/v1/taxonomy/attributes")


def route_cost(method: str, path: str, query: bytes = b"") -> float:
    """Tokens a request takes from its key's bucket (see :data:`ROUTE_COSTS`)."""
    method = "GET" if method == "HEAD" else method  # a HEAD does a GET's work
    for route_method, route, cost in ROUTE_COSTS:
        if method == route_method and (path == route or path.startswith(route + "/")):
            return cost
    nodes = method == "GET" and any(path == p or path.startswith(p + "/") for p in _PINNABLE)
    if nodes and "version" in parse_qs(query.decode("latin-1"), keep_blank_values=True):
        return PINNED_VERSION_COST
    return 1.0


def request_cost(scope: Scope) -> float:
    return route_cost(scope["method"], scope["path"], scope.get("query_string", b""))


def cost_note(path: str, query: bytes = b"") -> str:
    """For the API documentation of a costly route."""
    return f"Counts as {route_cost('GET', path, query):g} requests against the key's rate limit."


class RateLimiter:
    """Token bucket per key: ``rate`` tokens a second, at most ``burst`` saved up.

    The one token bucket of the service: per API key (requests), per key (history CPU
    seconds), per client address (failed authentications, :mod:`serve.api.auth_failures`).
    ``max_keys`` bounds memory for keys an outsider chooses (addresses): the least recently
    charged key is forgotten first (it is also the one most likely to have refilled)."""

    def __init__(
        self, rate: float, burst: float, *, max_keys: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, last refill)
        self._lock = threading.Lock()

    def _level(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - last) * self.rate)

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        if self.max_keys is not None:
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)

    def acquire(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens: 0.0 when allowed, else the seconds until they are available.
        A cost above the burst is capped at it, so every request can eventually pass."""
        cost = min(cost, self.burst)
        now = self._clock()
        with self._lock:
            tokens = self._level(key, now)
            if tokens >= cost:
                self._store(key, tokens - cost, now)
                return 0.0
            self._store(key, tokens, now)
            return (cost - tokens) / self.rate

    def wait(self, key: str, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens are available (0.0: now), taking nothing."""
        with self._lock:
            tokens = self._level(key, self._clock())
        return 0.0 if tokens >= cost else (cost - tokens) / self.rate

    def charge(self, key: str, tokens: float, *, floor: float | None = None) -> float:
        """Take ``tokens`` after the fact, for work whose cost is known only once done (a
        history rebuild's CPU seconds, a failed authentication): the bucket may go into
        debt, down to ``floor`` (default: one minute of refill), and ``acquire`` waits until
        it is paid back (``acquire(key, 0)``: is the key out of debt?). Returns the tokens left."""
        now = self._clock()
        with self._lock:
            have = self._level(key, now)
            if tokens <= 0:
                return have
            left = max(-60.0 * self.rate if floor is None else floor, have - tokens)
            self._store(key, left, now)
            return left

    def __contains__(self, key: str) -> bool:
        return key in self._buckets

    def __len__(self) -> int:
        return len(self._buckets)

    def describe(self, cost: float = 1.0) -> str:
        """The limit in words, for the 429 message."""
        limit = f"{self.rate:g} requests/s, burst {self.burst:g}"
        if cost == 1.0:
            return limit
        return f"{limit}; this request counts as {min(cost, self.burst):g} (search and history reads cost more)"


def _too_large(limit: int) -> str:
    return f"request body larger than {limit} bytes (limits.max_body_bytes / limits.max_job_bytes)"


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, limit_for: Callable[[Scope], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > limit):
            body = error_body(413, "request_too_large", _too_large(limit))
            await send({
                "type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")],
            })
            await send({"type": "http.response.body", "body": body})
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # raised inside the handler's body read: the error handlers answer 413
                    raise HTTPException(413, _too_large(limit))
            return message

        await self.app(scope, limited_receive, send)
