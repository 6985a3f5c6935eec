"""The pool of OpenAI-compatible endpoints: real :class:`OpenAICompatBackend` members whose
HTTP transport is an ``httpx2.MockTransport`` answering per host, and a clock the test moves."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import httpx2
import pytest

from agent.llm import (
    ChatMessage,
    LLMRequestRejectedError,
    LLMUnavailableError,
    create_backend,
    tags_schema,
)
from agent.llm.openai_compat import OpenAICompatBackend
from agent.llm.pool import EndpointPool, pool_status
from serve.llm_health import LLMHealth, describe_endpoints, track
from serve.metrics import Metrics

HOSTS = ("a.test", "b.test", "c.test")
MESSAGES = [ChatMessage("user", "Pick a tag")]
SCHEMA = tags_schema(["x1", "x2"])


def completion(content: str = '{"tags": ["x1"]}') -> dict[str, object]:
    return {
        "id": "c", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }


Behaviour = Callable[[httpx2.Request], httpx2.Response]


class Fleet:
    """Servers by host: each answers chat completions and ``GET /models`` as its behaviour
    says (default: fine) and counts what it was sent."""

    def __init__(self) -> None:
        self.chat: Counter[str] = Counter()
        self.probes: Counter[str] = Counter()
        self.chat_behaviour: dict[str, Behaviour] = {}
        self.probe_behaviour: dict[str, Behaviour] = {}
        self._lock = threading.Lock()

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        host = request.url.host
        if request.url.path.endswith("/models"):
            with self._lock:
                self.probes[host] += 1
            behaviour = self.probe_behaviour.get(host)
            return behaviour(request) if behaviour else httpx2.Response(200, json={"object": "list", "data": []})
        with self._lock:
            self.chat[host] += 1
        behaviour = self.chat_behaviour.get(host)
        return behaviour(request) if behaviour else httpx2.Response(200, json=completion(host))

    def members(self, n: int = 3) -> list[OpenAICompatBackend]:
        transport = httpx2.MockTransport(self.handle)
        return [OpenAICompatBackend(f"http://{h}/v1", "m", max_retries=0, transport=transport) for h in HOSTS[:n]]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def status_500(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(500, json={"error": {"message": "engine died"}})


def refuse(request: httpx2.Request) -> httpx2.Response:
    raise httpx2.ConnectError("connection refused", request=request)


def time_out(request: httpx2.Request) -> httpx2.Response:
    raise httpx2.ReadTimeout("slow", request=request)


def pool_of(fleet: Fleet, n: int = 3, **kw: object) -> tuple[EndpointPool, Clock]:
    clock = Clock()
    pool = EndpointPool(fleet.members(n), clock=clock, background_probes=False, **kw)  # type: ignore[arg-type]
    return pool, clock


def served_by(pool: EndpointPool) -> str:
    return pool.generate(MESSAGES, SCHEMA).text


def healthy(pool: EndpointPool) -> dict[str, bool]:
    return {s.base_url.split("//")[1].split("/")[0]: s.healthy for s in pool.status()}


def test_idle_endpoints_take_turns() -> None:
    fleet = Fleet()
    pool, _ = pool_of(fleet)
    assert [served_by(pool) for _ in range(6)] == ["a.test", "b.test", "c.test"] * 2
    assert pool.info.name == "openai-pool" and pool.info.max_concurrency == 3 * 32


def test_the_endpoint_with_the_fewest_requests_in_flight_gets_the_next() -> None:
    fleet = Fleet()
    release, entered = threading.Event(), threading.Event()

    def slow(request: httpx2.Request) -> httpx2.Response:
        entered.set()
        assert release.wait(10)
        return httpx2.Response(200, json=completion("a.test"))

    fleet.chat_behaviour["a.test"] = slow
    pool, _ = pool_of(fleet)
    busy = threading.Thread(target=served_by, args=(pool,))
    busy.start()
    try:
        assert entered.wait(10)  # a.test holds one request
        assert [s.outstanding for s in pool.status()] == [1, 0, 0]
        assert [served_by(pool) for _ in range(4)] == ["b.test", "c.test", "b.test", "c.test"]
    finally:
        release.set()
        busy.join(10)
    assert [s.outstanding for s in pool.status()] == [0, 0, 0]
    assert fleet.chat["a.test"] == 1


@pytest.mark.parametrize("fault", [status_500, refuse, time_out], ids=["5xx", "connect", "timeout"])
def test_a_failing_endpoint_is_ejected_and_the_request_retried_on_another(fault: Behaviour) -> None:
    fleet = Fleet()
    fleet.chat_behaviour["a.test"] = fault
    pool, _ = pool_of(fleet)
    assert served_by(pool) == "b.test"  # tried on a.test first, answered by b.test
    assert healthy(pool) == {"a.test": False, "b.test": True, "c.test": True}
    assert {served_by(pool) for _ in range(6)} == {"b.test", "c.test"}
    assert fleet.chat["a.test"] == 1
    status = pool.status()[0]
    assert status.failed == 1 and status.last_error and "a.test" in status.last_error


def test_a_4xx_answer_is_not_retried_and_does_not_eject() -> None:
    fleet = Fleet()
    fleet.chat_behaviour["a.test"] = lambda r: httpx2.Response(
        400, json={"error": {"message": "prompt is longer than the context window"}}
    )
    pool, _ = pool_of(fleet)
    with pytest.raises(LLMRequestRejectedError, match="400") as caught:
        served_by(pool)
    assert caught.value.status_code == 400
    assert fleet.chat == Counter({"a.test": 1})  # nobody else was asked
    assert all(healthy(pool).values())


def test_retries_are_bounded() -> None:
    fleet = Fleet()
    for h in HOSTS:
        fleet.chat_behaviour[h] = status_500
    pool, _ = pool_of(fleet, max_retries=1)
    with pytest.raises(LLMUnavailableError, match="after 2 attempts"):
        served_by(pool)
    assert sum(fleet.chat.values()) == 2 and fleet.chat["c.test"] == 0


def test_with_every_endpoint_ejected_a_request_fails_at_once_without_a_call() -> None:
    fleet = Fleet()
    for h in HOSTS[:2]:
        fleet.chat_behaviour[h] = refuse
    pool, _ = pool_of(fleet, n=2)
    with pytest.raises(LLMUnavailableError, match="no other healthy endpoint"):
        served_by(pool)
    before = sum(fleet.chat.values())
    with pytest.raises(LLMUnavailableError, match="no healthy LLM endpoint: all 2 ejected"):
        served_by(pool)
    assert sum(fleet.chat.values()) == before == 2


def test_an_ejected_endpoint_is_probed_after_its_back_off_and_readmitted_once_it_answers() -> None:
    fleet = Fleet()
    fleet.chat_behaviour["a.test"] = status_500
    fleet.probe_behaviour["a.test"] = refuse
    pool, clock = pool_of(fleet, n=2, eject_s=2.0, eject_max_s=5.0)
    served_by(pool)
    assert pool.probe_due() == [] and fleet.probes["a.test"] == 0  # back-off not over
    clock.now += 2.0
    assert pool.probe_due() == [] and fleet.probes["a.test"] == 1  # probe failed: out for 4 s
    assert pool.status()[0].ejected_for_s == pytest.approx(4.0)
    clock.now += 3.9
    assert pool.probe_due() == [] and fleet.probes["a.test"] == 1
    clock.now += 0.1
    pool.probe_due()
    assert pool.status()[0].ejected_for_s == pytest.approx(5.0)  # doubled again, capped at eject_max_s
    # the server comes back: the next probe re-admits it, and it gets traffic again
    del fleet.chat_behaviour["a.test"], fleet.probe_behaviour["a.test"]
    assert [served_by(pool) for _ in range(2)] == ["b.test", "b.test"]  # not before its probe
    clock.now += 5.0
    assert pool.probe_due() == ["http://a.test/v1"]
    assert healthy(pool)["a.test"]
    assert {served_by(pool) for _ in range(2)} == {"a.test", "b.test"}


def test_a_probe_answering_5xx_keeps_the_endpoint_out() -> None:
    fleet = Fleet()
    fleet.chat_behaviour["a.test"] = time_out
    fleet.probe_behaviour["a.test"] = status_500
    pool, clock = pool_of(fleet, n=2)
    served_by(pool)
    clock.now += 60
    assert pool.probe_due() == [] and not healthy(pool)["a.test"]


def test_the_background_prober_readmits_a_recovered_endpoint() -> None:
    fleet = Fleet()
    fleet.chat_behaviour["a.test"] = status_500
    pool = EndpointPool(fleet.members(2), eject_s=0.05, eject_max_s=0.2)
    try:
        assert served_by(pool) == "b.test"
        del fleet.chat_behaviour["a.test"]
        deadline = time.monotonic() + 5
        while not healthy(pool)["a.test"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert healthy(pool)["a.test"] and fleet.probes["a.test"] >= 1
    finally:
        pool.close()


def test_concurrent_callers_are_all_answered_and_counted_once() -> None:
    fleet = Fleet()
    flaky = iter(range(10**6))
    lock = threading.Lock()

    def sometimes_500(request: httpx2.Request) -> httpx2.Response:
        with lock:
            n = next(flaky)
        return status_500(request) if n % 7 == 0 else httpx2.Response(200, json=completion("c.test"))

    fleet.chat_behaviour["c.test"] = sometimes_500
    pool, clock = pool_of(fleet)
    errors: list[BaseException] = []

    def worker() -> None:
        for _ in range(40):
            try:
                served_by(pool)
            except BaseException as exc:
                errors.append(exc)
            clock.now += 1.0  # unsynchronised on purpose: only moves forward
            pool.probe_due()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    status = pool.status()
    assert sum(s.served for s in status) == 8 * 40
    assert sum(s.outstanding for s in status) == 0
    assert sum(fleet.chat.values()) == 8 * 40 + sum(s.failed for s in status)


def test_create_backend_makes_a_pool_of_several_urls_and_a_plain_backend_of_one() -> None:
    fleet = Fleet()
    transport = httpx2.MockTransport(fleet.handle)
    single = create_backend("openai", base_url="http://a.test/v1", transport=transport)
    assert isinstance(single, OpenAICompatBackend)
    pool = create_backend(
        "openai", base_url=["http://a.test/v1", "http://b.test/v1"], transport=transport, max_retries=1
    )
    try:
        assert isinstance(pool, EndpointPool)
        fleet.chat_behaviour["a.test"] = status_500
        # one attempt per endpoint: the members do not retry by themselves
        assert pool.generate(MESSAGES, SCHEMA).text == "b.test"
        assert fleet.chat == Counter({"a.test": 1, "b.test": 1})
    finally:
        pool.close()
        single.close()


def test_readiness_describes_the_endpoints_through_the_tracking_wrapper() -> None:
    fleet = Fleet()
    fleet.chat_behaviour["a.test"] = refuse
    pool, _ = pool_of(fleet, n=2)
    tracked = track(pool, LLMHealth(), Metrics(), owned=True)
    assert tracked.generate(MESSAGES, SCHEMA).text == "b.test"
    endpoints = pool_status(tracked)
    assert endpoints is not None
    line = describe_endpoints(endpoints)
    assert line.startswith("1 of 2 healthy: http://a.test/v1 ejected, next probe in 2.0 s")
    assert "unreachable" in line
    assert pool_status(fleet.members(1)[0]) is None
