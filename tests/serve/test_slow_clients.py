"""Slow clients (issue 18, finding 6) against a real `tagsmith serve` on loopback: a
trickled request head is cut at the header deadline, an incomplete or trickled body gets
408, a connection cap answers 503; normal requests are unaffected. Small timeouts, bounded
loops: every wait below ends by itself."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.serve.helpers import HASHING_ENV, auth, make_keys, start_server, stop_server, wait_ready

pytestmark = pytest.mark.process  # a real server process, seconds of deliberate waiting

#: the body must average BODY_MIN_RATE bytes/s after BODY_IDLE_S: the drips below send
#: ~2.5 bytes/s, so they are cut at about BODY_IDLE_S / (1 - 2.5 / BODY_MIN_RATE) = 1.33 s
HEADER_S, BODY_IDLE_S, BODY_MIN_RATE, CAP = 1.5, 1.0, 10, 4
#: read_until_closed gives up after GIVE_UP_S (the connection still open: inf); a cut
#: expected after a second or a few must come within CUT_BY_S: well under the give-up, with
#: room for a stalled process on a loaded 2-core machine
GIVE_UP_S, CUT_BY_S = 30, 15.0


@pytest.fixture(scope="module")
def server(shop_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    from tests.serve.helpers import copy_data_dir

    data = copy_data_dir(shop_template, tmp_path_factory.mktemp("slow") / "data")
    key = make_keys(data)["tags"]
    env = {
        **HASHING_ENV, "TAGSMITH_DATA_DIR": str(data), "TAGSMITH_TAGGING__PIPELINE": "knn",
        "TAGSMITH_SERVER__HEADER_TIMEOUT_S": str(HEADER_S),
        "TAGSMITH_SERVER__BODY_TIMEOUT_S": str(BODY_IDLE_S),
        "TAGSMITH_SERVER__BODY_MIN_RATE_BYTES_S": str(BODY_MIN_RATE),
        "TAGSMITH_SERVER__MAX_CONNECTIONS": str(CAP),
    }
    port = free_port()
    proc = start_server(port, env)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}", env)
        yield port, key
    finally:
        stop_server(proc)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(0.1)
    return sock


def read_until_closed(sock: socket.socket, seconds: float, drip: bytes = b"", every: float = 0.2) -> tuple[bytes, float]:
    """What the server sends until it closes (sending ``drip`` a byte at a time meanwhile);
    the elapsed seconds. Gives up after ``seconds`` (the connection still open: ``inf``)."""
    start = time.monotonic()
    got, sent = b"", 0
    while time.monotonic() - start < seconds:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            chunk = None
        except ConnectionError:
            return got, time.monotonic() - start
        if chunk == b"":
            return got, time.monotonic() - start
        got += chunk or b""
        if sent < len(drip) and not got:
            try:
                sock.sendall(drip[sent:sent + 1])
            except (BrokenPipeError, ConnectionResetError):
                return got, time.monotonic() - start
            sent += 1
            time.sleep(every)
    return got, float("inf")


def error_of(raw: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)["error"]


def test_a_trickled_request_head_is_cut_at_the_header_deadline(server: tuple[int, str]) -> None:
    port, _ = server
    drip = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200  # never finished
    with connect(port) as sock:
        raw, elapsed = read_until_closed(sock, GIVE_UP_S, drip=drip, every=0.1)
    assert elapsed <= CUT_BY_S
    status, headers, error = error_of(raw)
    assert status == 408 and headers["connection"] == "close" and error["code"] == "request_timeout"


def test_many_trickling_connections_are_all_cut(server: tuple[int, str]) -> None:
    port, _ = server
    socks = [connect(port) for _ in range(50)]
    for sock in socks:
        sock.setblocking(False)
    open_ = set(range(len(socks)))
    start = time.monotonic()
    try:
        while open_ and time.monotonic() - start < GIVE_UP_S:  # bounded: the deadline is 1.5 s
            for i in list(open_):
                try:
                    socks[i].send(b"X")  # a byte of an endless request line, every 0.2 s
                    if socks[i].recv(65536) == b"":
                        open_.discard(i)
                except BlockingIOError:
                    pass
                except OSError:  # reset / broken pipe: closed by the server
                    open_.discard(i)
            time.sleep(0.2)
        elapsed = time.monotonic() - start
    finally:
        for sock in socks:
            sock.close()
    assert not open_, f"{len(open_)} of {len(socks)} trickling connections still open"
    assert elapsed <= CUT_BY_S


def test_a_silent_connection_is_closed_at_the_header_deadline(server: tuple[int, str]) -> None:
    port, _ = server
    with connect(port) as sock:
        raw, elapsed = read_until_closed(sock, GIVE_UP_S)
    assert raw == b"" and elapsed <= CUT_BY_S


def post_head(length: int, key: str, path: str = "/v1/tags", media: str = "application/json") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: {media}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


@pytest.mark.parametrize(("path", "media", "start"), [
    ("/v1/tags", "application/json", b'{"title": '),
    ("/v1/jobs", "application/jsonl", b'{"custom_id": "1", "product": {"title": "tee"}}\n{"cus'),
])
def test_an_incomplete_body_gets_408_at_the_body_deadline(
    server: tuple[int, str], path: str, media: str, start: bytes,
) -> None:
    port, key = server
    with connect(port) as sock:
        sock.sendall(post_head(1000, key, path, media) + start)
        raw, elapsed = read_until_closed(sock, GIVE_UP_S)
    assert elapsed <= CUT_BY_S
    status, headers, error = error_of(raw)
    assert status == 408 and headers["connection"] == "close" and error["code"] == "request_timeout"
    assert error["request_id"] == headers["x-request-id"]


def test_a_body_slower_than_the_minimum_rate_gets_408(server: tuple[int, str]) -> None:
    port, key = server
    with connect(port) as sock:
        sent = time.monotonic()  # the server's clock starts later: when the head has arrived
        sock.sendall(post_head(1000, key))
        # a byte every 0.3 s beats the 1 s between parts, not the 10 bytes/s on average
        raw, elapsed = read_until_closed(sock, GIVE_UP_S, drip=b" " * 1000, every=0.3)
        since_head = time.monotonic() - sent
    assert elapsed <= CUT_BY_S and since_head >= BODY_IDLE_S  # cut, and never before its deadline
    status, _, error = error_of(raw)
    assert status == 408 and "arriving too slowly" in str(error["message"])


def test_a_body_at_the_minimum_rate_is_not_cut(server: tuple[int, str]) -> None:
    port, key = server
    body = b'{"title": "Cast iron skillet"' + b" " * 40 + b"}"
    with connect(port) as sock:
        sock.sendall(post_head(len(body), key))
        start = last = time.monotonic()
        gaps = []
        for i in range(0, len(body), 2):  # 20 bytes/s for ~3.5 s: twice the minimum rate
            sock.sendall(body[i:i + 2])
            gaps.append(-last + (last := time.monotonic()))
            time.sleep(0.1)
        raw, _ = read_until_closed(sock, 10)
    assert time.monotonic() - start > 2 * BODY_IDLE_S  # longer than a fixed deadline would allow
    if max(gaps) >= BODY_IDLE_S / 2:  # this process stalled (a loaded machine): a cut may be right
        assert raw.startswith((b"HTTP/1.1 200", b"HTTP/1.1 408")), raw[:200]
        print(f"sending stalled for {max(gaps):.2f} s: {raw[:12]!r}")
    else:
        assert raw.startswith(b"HTTP/1.1 200"), raw[:200]


def test_a_body_still_trickling_after_an_early_answer_is_cut(server: tuple[int, str]) -> None:
    port, _ = server
    with connect(port) as sock:
        sock.sendall(post_head(1000, "wrong"))  # answered 401 at once; the body is never read
        answered, _ = read_until_closed(sock, 2)
        assert answered.startswith(b"HTTP/1.1 401")
        # the server's protocol, not the app, now bounds the rest: the minimum rate + grace
        raw, elapsed = read_until_closed(sock, GIVE_UP_S, drip=b" " * 1000, every=0.3)
    assert raw == b"" and elapsed <= CUT_BY_S + 5.0  # the protocol adds 5 s of grace


def test_normal_requests_and_keep_alive_still_work(server: tuple[int, str]) -> None:
    port, key = server
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth(key), timeout=30) as client:
        for _ in range(3):
            assert client.post("/v1/tags", json={"title": "Cast iron skillet"}).status_code == 200
            time.sleep(0.5)  # within keep-alive; the header deadline restarts after each response


def test_connections_beyond_the_cap_get_503(server: tuple[int, str]) -> None:
    port, key = server
    url = f"http://127.0.0.1:{port}/v1/taxonomy"
    # CAP idle connections hold the server's slots from when it accepts them until it closes
    # them at HEADER_S: a probe in between gets 503. Probed until it does: a stalled test
    # process may probe before the accepts or after the close (200 then, and a new round)
    deadline, rounds, over = time.monotonic() + 60, 0, None
    while over is None:
        assert time.monotonic() < deadline, f"no 503 in {rounds} round(s) of {CAP} idle connections"
        rounds += 1
        idle = [connect(port) for _ in range(CAP)]
        try:
            opened = time.monotonic()
            while over is None and time.monotonic() - opened < HEADER_S:
                probe = httpx.get(url, headers=auth(key), timeout=10)
                if probe.status_code == 503:
                    over = probe
                else:
                    assert probe.status_code == 200, probe.text
                    time.sleep(0.05)
        finally:
            for sock in idle:
                sock.close()
    assert over.json()["error"]["code"] == "unavailable" and int(over.headers["retry-after"]) >= 1
    deadline = time.monotonic() + 60
    while (status := httpx.get(url, headers=auth(key), timeout=10).status_code) != 200:
        assert status == 503 and time.monotonic() < deadline
        time.sleep(0.2)
