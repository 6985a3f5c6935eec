"""The endpoint pool over two real OpenAI-compatible servers on loopback (separate processes,
real sockets); one is SIGKILLed in the middle of a run: no product is lost, the dead one is
ejected and stays out (its probes fail), the survivor answers everything after."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from agent.llm import ChatMessage, create_backend, tags_schema
from agent.llm.pool import EndpointPool
from tests.conftest import free_port

pytestmark = pytest.mark.process

PRODUCTS = 240


def _start() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.agent.openai_stub_server", "--port", str(port), "--latency", "0.01"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=os.getcwd(),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "ready" once listening (bounded: the process exits on error)
    assert line.strip() == b"ready", proc.stderr.read() if proc.stderr else line  # type: ignore[union-attr]
    return proc, f"http://127.0.0.1:{port}/v1"


def _served(pool: EndpointPool, url: str) -> int:
    return next(s.served for s in pool.status() if s.base_url == url)


@pytest.fixture
def servers() -> Iterator[list[tuple[subprocess.Popen[bytes], str]]]:
    started = [_start(), _start()]
    try:
        yield started
    finally:
        for proc, _ in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


def test_a_server_killed_mid_run_loses_no_product_and_is_ejected(
    servers: list[tuple[subprocess.Popen[bytes], str]],
) -> None:
    (_survivor, url_a), (victim, url_b) = servers
    pool = create_backend("openai", base_url=[url_a, url_b], model="stub", timeout_s=5.0, max_retries=2,
                          eject_s=0.2, eject_max_s=1.0)
    assert isinstance(pool, EndpointPool)
    done = 0
    lock = threading.Lock()
    killed = threading.Event()

    def tag(i: int) -> str | None:
        nonlocal done
        allowed = [f"p{i}-first", f"p{i}-second"]
        gen = pool.generate([ChatMessage("user", f"product {i}")], tags_schema(allowed), max_tokens=16)
        with lock:
            done += 1
            # a third of the way in, once the victim has answered at least once (balancing by
            # least outstanding requests gives it traffic, but a stalled process may answer late)
            if done >= PRODUCTS // 3 and not killed.is_set() and _served(pool, url_b) >= 1:
                victim.send_signal(signal.SIGKILL)  # in-flight requests on it die with it
                killed.set()
        return gen.parsed["tags"][0] if isinstance(gen.parsed, dict) else None

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(8) as workers:
            answers = list(workers.map(tag, range(PRODUCTS)))
        assert killed.is_set() and victim.wait(5) == -signal.SIGKILL
        # every product answered, and answered right (the first allowed id is the stub's choice)
        assert answers == [f"p{i}-first" for i in range(PRODUCTS)]
        status = {s.base_url: s for s in pool.status()}
        assert status[url_a].healthy and not status[url_b].healthy
        assert status[url_b].failed >= 1 and status[url_b].last_error
        assert status[url_a].served + status[url_b].served == PRODUCTS
        assert status[url_b].served >= 1  # it took traffic before the kill
        # its probes keep failing: still out after several back-off periods, the rest still served
        time.sleep(1.0)
        for i in range(20):
            pool.generate([ChatMessage("user", "after")], tags_schema([f"late{i}"]), max_tokens=16)
        after = {s.base_url: s for s in pool.status()}
        assert not after[url_b].healthy and after[url_a].served == status[url_a].served + 20
    finally:
        pool.close()
    assert time.monotonic() - started < 300  # bounded: nothing waited for a dead server's answer
