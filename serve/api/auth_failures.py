"""A limit on failed authentications per client address (429 once spent).

A token bucket per address: each failed authentication takes a token, ``per_min`` tokens
come back a minute, at most ``burst`` saved up. While an address has no token left, *every*
request of it that presents credentials is refused before its key is even looked at, so a
guesser cannot tell a right key from a wrong one while limited. A successful
authentication gives nothing back: the penalty runs out with time only (else a client
holding one valid key could interleave it to keep guessing others).

The address is the ASGI ``scope["client"]`` host. Behind a reverse proxy that is the
proxy, unless the operator names it in ``server.trusted_proxies``: uvicorn then rewrites
``scope["client"]`` from ``X-Forwarded-For`` (we never parse that header ourselves: an
untrusted client could write anything in it). IPv6 addresses count per /64, the block one
host usually gets, so cycling through its own addresses buys an attacker nothing.

Memory is bounded: at most ``max_clients`` addresses are tracked, the least recently
failing one forgotten first (it is also the one most likely to have refilled).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

from serve.api.limits import RateLimiter


def client_key(host: str | None) -> str:
    """The unit a budget belongs to: the address, an IPv6 address's /64."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a unix socket path, a test client's name
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # ::ffff:192.0.2.1 is 192.0.2.1
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class AuthFailureLimiter:
    """The policy on top of the service's one token bucket (:class:`RateLimiter`)."""

    def __init__(
        self, per_min: float, burst: int, max_clients: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bucket = RateLimiter(per_min / 60.0, burst, max_keys=max_clients, clock=clock)

    def blocked_for(self, key: str) -> float:
        """Seconds until ``key`` may try again (0.0: it may now). Takes nothing."""
        return self._bucket.wait(key) if key in self._bucket else 0.0

    def failed(self, key: str) -> bool:
        """Count a failed authentication; True when it spent the last token (now limited)."""
        return self._bucket.charge(key, 1.0, floor=0.0) < 1.0

    def __len__(self) -> int:
        return len(self._bucket)
