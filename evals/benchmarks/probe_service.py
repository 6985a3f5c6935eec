"""A hostile-but-legitimate client against a real ``tagsmith serve`` (issue 18's probe, re-run).

Starts the service on loopback with the default configuration (hybrid pipeline, the real
MiniLM embedder, the packaged Shopify taxonomy) in a temporary data directory, then, one
probe at a time, prints what a security reviewer would ask for:

- ``nesting``: a job line and a tags body nested 1,000 / 100,000 deep (status codes);
- ``flood``: another key's ``POST /v1/tags`` latency (p50/p95/max) alone, then while one
  ``tags`` key floods ``/v1/taxonomy/search``, pinned old-version reads and migration maps;
- ``uploads``: server RSS while 8 concurrent 60 MiB job uploads (200,000 lines each, over
  the line limit) are sent, and their statuses;
- ``auth``: 1,000 wrong keys from this address (how many 401 / 429), then whether a valid key
  from the same address is refused too;
- ``ifmatch``: 20 concurrent edits with ``If-Match: *`` (statuses);
- ``slow``: 50 connections trickling header bytes and 20 with incomplete bodies (how long
  the server keeps them).

Usage (takes ~3 minutes on 2 cores)::

    .venv/bin/python -m evals.benchmarks.probe_service [--only flood,auth] [--port 8765]
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
TAGSMITH = str(Path(sys.executable).parent / "tagsmith")
ADMIN = "probe-admin-" + "k" * 40
PRODUCTS = ["Merino wool hiking socks", "Cast iron skillet 12 inch", "USB-C charging cable 2 m",
            "Men's denim jacket", "Stainless steel water bottle", "Wireless gaming mouse"]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Server:
    def __init__(self, port: int, data_dir: Path) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.port = port
        env = {**os.environ, "TAGSMITH_DATA_DIR": str(data_dir), "TAGSMITH_AUTH__ADMIN_KEY": ADMIN,
               "TAGSMITH_SERVER__REFRESH_INTERVAL_S": "0"}
        self.log = (data_dir.parent / "server.log").open("wb")
        self.proc = subprocess.Popen([TAGSMITH, "serve", "--port", str(port)], env=env, cwd=REPO,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "the server exited: see server.log"
            try:
                if httpx.get(f"{self.base}/readyz", timeout=30).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SystemExit("server not ready in 600 s")

    def client(self, key: str = ADMIN) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {key}"}, timeout=120)

    def key(self, *scopes: str) -> str:
        with self.client() as c:
            r = c.post("/v1/keys", json={"scopes": list(scopes), "name": "probe"})
            r.raise_for_status()
            return str(r.json()["key"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---- probes ---------------------------------------------------------------------------------
def probe_nesting(server: Server) -> None:
    with server.client() as c:
        for depth in (1_000, 100_000):
            for kind, (o, e) in {"arrays": ("[", "]"), "objects": ('{"a":', "}")}.items():
                nested = o * depth + ("1" if kind == "objects" else "") + e * depth
                line = '{"custom_id":"1","product":' + nested + "}\n"
                job = c.post("/v1/jobs", content=line.encode(), headers={"Content-Type": "application/jsonl"})
                tags = c.post("/v1/tags", content=('{"title":"x","attributes":' + nested + "}").encode(),
                              headers={"Content-Type": "application/json"})
                print(f"nesting depth {depth:>7} {kind:<7}: POST /v1/jobs {job.status_code}, POST /v1/tags {tags.status_code}")


_SERIAL = itertools.count()


def _tags_latency(server: Server, key: str, seconds: float, rate: float = 20.0) -> list[float]:
    """Latencies (ms) of one client tagging at most ``rate`` products a second (well inside
    its key's rate limit), one request at a time."""
    out: list[float] = []
    with server.client(key) as c:
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < seconds:
            t0 = time.perf_counter()
            # a title never sent before: no embedding-cache hit makes a phase look faster
            r = c.post("/v1/tags", json={"title": f"{PRODUCTS[i % len(PRODUCTS)]} {next(_SERIAL)}"})
            out.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, r.text
            i += 1
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
    return out


#: flood scenarios: what one attacking ``tags`` key requests at 45/s (``{w}``: a search word)
FLOODS = {
    "search 45/s": "/v1/taxonomy/search?q={w}&limit=200",
    "old versions 45/s": "/v1/taxonomy/nodes?version={old}&limit=1000",
    "migration maps 45/s": "/v1/taxonomy/migration-map?from={old}&to={new}",
}
_WORDS = ["shirt", "apparel", "wool", "kitchen", "a", "e", "electronics cables", "toys", "garden hose"]


def _flood(base: str, key: str, rate: float, seconds: float, template: str) -> Counter[int]:
    """Runs in its own process (so the attacker's client work does not hold the victim
    client's GIL): ``rate`` requests a second over keep-alive connections, ``seconds`` long."""
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60,
                      limits=httpx.Limits(max_connections=16)) as client:

        def one(i: int) -> None:
            path = template.format(w=_WORDS[i % len(_WORDS)], old=1 + i % 30, new=31 + i % 30)
            try:
                statuses[client.get(path).status_code] += 1
            except httpx.HTTPError:
                statuses[0] += 1

        with ThreadPoolExecutor(16) as pool:
            t0 = time.monotonic()
            i = 0
            while time.monotonic() - t0 < seconds:
                pool.submit(one, i)
                i += 1
                time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
    return statuses


def probe_flood(server: Server, only: str = "") -> None:
    victim, attacker = server.key("tags"), server.key("tags")
    with server.client() as c:  # 61 versions so that old versions and long migration maps exist
        leaves = [h["id"] for h in c.get("/v1/taxonomy/search", params={"q": "socks", "limit": 5}).json()["hits"]]
        for i in range(60):
            r = c.post("/v1/taxonomy/edits", headers={"If-Match": "*"},
                       json={"edits": [{"op": "add_synonym", "id": leaves[0], "synonym": f"probe synonym {i}"}]})
            assert r.status_code == 201, r.text
    time.sleep(20)  # the edits' background work (re-embedding changed nodes) settles
    _tags_latency(server, victim, 3)  # warm-up
    alone = _tags_latency(server, victim, 15)
    print(f"flood: victim POST /v1/tags alone: n={len(alone)} p50 {statistics.median(alone):.1f} ms, "
          f"p95 {pct(alone, 0.95):.1f} ms, max {max(alone):.1f} ms")
    for name, template in FLOODS.items():
        if only and only not in name:
            continue
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as attacker_process:
            flood = attacker_process.submit(_flood, server.base, attacker, 45, 17, template)
            time.sleep(3)  # the process starts, then floods for 17 s: measure 15 s inside that
            loaded = _tags_latency(server, victim, 15)
            attacker_statuses = flood.result()
        p50 = statistics.median(loaded)
        print(f"flood: victim POST /v1/tags during {name}: n={len(loaded)} p50 {p50:.1f} ms "
              f"({p50 / statistics.median(alone):.2f}x), p95 {pct(loaded, 0.95):.1f} ms, max {max(loaded):.1f} ms; "
              f"attacker statuses {dict(sorted(attacker_statuses.items()))}")
        time.sleep(3)  # let the attacker's bucket refill between scenarios
    after = _tags_latency(server, victim, 15)
    print(f"flood: victim POST /v1/tags alone again: n={len(after)} p50 {statistics.median(after):.1f} ms, "
          f"p95 {pct(after, 0.95):.1f} ms, max {max(after):.1f} ms")


def _big_body(lines: int, size: int) -> Iterator[bytes]:
    pad = "x" * max(0, size // lines - 80)
    chunk: list[str] = []
    for i in range(lines):
        chunk.append(json.dumps({"custom_id": f"id-{i}", "product": {"title": f"product {i} {pad}"}}) + "\n")
        if len(chunk) == 1000:
            yield "".join(chunk).encode()
            chunk = []
    if chunk:
        yield "".join(chunk).encode()


def probe_uploads(server: Server, n: int = 8, mib: int = 60, lines: int = 200_000) -> None:
    before = rss_mib(server.proc.pid)
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mib(server.proc.pid))
            time.sleep(0.05)

    def upload(_: int) -> tuple[int, float]:
        t0 = time.monotonic()
        try:
            with server.client() as c:
                r = c.post("/v1/jobs", content=_big_body(lines, mib << 20), headers={"Content-Type": "application/jsonl"})
                return r.status_code, time.monotonic() - t0
        except httpx.HTTPError:
            return 0, time.monotonic() - t0

    sampler = threading.Thread(target=sample)
    sampler.start()
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(upload, range(n)))
    done.set()
    sampler.join()
    time.sleep(2)
    print(f"uploads: {n} x {mib} MiB ({lines} lines each): statuses {dict(Counter(s for s, _ in results))}, "
          f"slowest {max(t for _, t in results):.1f} s; server RSS {before:.0f} MiB before, peak {peak:.0f} MiB "
          f"(+{peak - before:.0f} MiB), {rss_mib(server.proc.pid):.0f} MiB after")


def probe_auth(server: Server) -> None:
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=server.base, timeout=30) as c:
        for i in range(1_000):
            statuses[c.get("/v1/jobs", headers={"Authorization": f"Bearer tsk_wrong{i:06d}"}).status_code] += 1
        valid = c.get("/v1/jobs", headers={"Authorization": f"Bearer {ADMIN}"}).status_code
    print(f"auth: 1,000 wrong keys from one address: {dict(sorted(statuses.items()))}; a valid key from "
          f"the same address right after: {valid}")


def probe_ifmatch(server: Server) -> None:
    with server.client() as c:
        leaf = c.get("/v1/taxonomy/search", params={"q": "hoodies", "limit": 1}).json()["hits"][0]["id"]

    def edit(i: int) -> int:
        with server.client() as c:
            return c.post("/v1/taxonomy/edits", headers={"If-Match": "*"},
                          json={"edits": [{"op": "add_synonym", "id": leaf, "synonym": f"concurrent {i}"}]}).status_code

    with ThreadPoolExecutor(20) as pool:
        statuses = Counter(pool.map(edit, range(20)))
    print(f"if-match *: 20 concurrent edits: {dict(sorted(statuses.items()))}")


def _held_for(port: int, start: Callable[[socket.socket], None], limit: float) -> float:
    """Seconds until the server answers or closes a connection that sends one more byte a
    second after ``start`` (capped at ``limit``)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=limit)
    t0 = time.monotonic()
    try:
        start(s)
        s.settimeout(1.0)
        while time.monotonic() - t0 < limit:
            try:
                if s.recv(65536) is not None:
                    break  # a response (408) or EOF: the server acted
            except TimeoutError:
                try:
                    s.sendall(b"X")
                except OSError:
                    break
            except OSError:
                break
    finally:
        s.close()
    return time.monotonic() - t0


def probe_slow(server: Server, limit: float = 40.0) -> None:
    def header_start(s: socket.socket) -> None:
        s.sendall(b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nX-Slow: ")

    def body_start(s: socket.socket) -> None:
        s.sendall(b"POST /v1/tags HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + ADMIN.encode()
                  + b"\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"title\": \"")

    for name, start, n in (("header trickle", header_start, 50), ("incomplete body", body_start, 20)):
        with ThreadPoolExecutor(n) as pool:
            held = list(pool.map(_held_for, [server.port] * n, [start] * n, [limit] * n))
        cut = sum(h < limit - 0.5 for h in held)
        print(f"slow clients: {n} x {name}: {cut} cut by the server, held median {statistics.median(held):.1f} s, "
              f"max {max(held):.1f} s (cap {limit:.0f} s)")


PROBES: dict[str, Callable[[Server], None]] = {
    # auth last: it leaves this address locked out for a while
    "nesting": probe_nesting, "ifmatch": probe_ifmatch, "flood": probe_flood, "uploads": probe_uploads,
    "slow": probe_slow, "auth": probe_auth,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(PROBES), help="comma-separated: " + ", ".join(PROBES))
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tagsmith-probe-") as tmp:
        t0 = time.monotonic()
        server = Server(args.port, Path(tmp) / "data")
        print(f"server ready in {time.monotonic() - t0:.1f} s (pid {server.proc.pid}, RSS {rss_mib(server.proc.pid):.0f} MiB)")
        try:
            for name in args.only.split(","):
                if server.proc.poll() is not None:
                    raise SystemExit(f"the server died before {name}: see {tmp}/server.log")
                PROBES[name.strip()](server)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
