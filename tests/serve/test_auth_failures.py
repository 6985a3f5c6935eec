"""The failed-authentication limiter itself (the middleware's use of it: test_auth.py)."""

from __future__ import annotations

import pytest

from serve.api.auth_failures import AuthFailureLimiter, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_is_spent_by_failures_and_refills_with_time_only() -> None:
    clock = Clock()
    limiter = AuthFailureLimiter(per_min=6, burst=3, max_clients=10, clock=clock)
    assert limiter.blocked_for("a") == 0.0
    assert [limiter.failed("a") for _ in range(3)] == [False, False, True]
    assert limiter.blocked_for("a") == pytest.approx(10.0)  # one token every 10 s
    clock.now += 4
    assert limiter.blocked_for("a") == pytest.approx(6.0)
    clock.now += 6
    assert limiter.blocked_for("a") == 0.0
    assert limiter.failed("a") is True  # the one refilled token, spent again
    assert limiter.blocked_for("b") == 0.0
    clock.now += 3600
    assert limiter.blocked_for("a") == 0.0 and limiter.failed("a") is False  # refilled to the burst, not beyond


def test_memory_is_bounded_forgetting_the_oldest_address_first() -> None:
    limiter = AuthFailureLimiter(per_min=1, burst=1, max_clients=3, clock=Clock())
    for address in ("a", "b", "c", "d"):
        limiter.failed(address)
    assert len(limiter) == 3
    assert limiter.blocked_for("a") == 0.0  # forgotten
    assert all(limiter.blocked_for(x) > 0 for x in ("b", "c", "d"))


@pytest.mark.parametrize(("host", "key"), [
    ("192.0.2.1", "192.0.2.1"),
    ("::ffff:192.0.2.1", "192.0.2.1"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
    ("testclient", "testclient"),
    (None, "unknown"),
])
def test_addresses_are_counted_per_host_and_ipv6_per_64(host: str | None, key: str) -> None:
    assert client_key(host) == key
