"""Load on loopback: 32 concurrent clients send 2,000 tagging requests to the real service
process whose LLM is a fault-free fixed-latency backend: 0 errors; the service's own
overhead (client-measured latency minus the backend's time) is reported."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.serve.helpers import HASHING_ENV, auth, make_keys, start_server, stop_server, wait_ready
from tests.serve.test_jobs import TITLES

pytestmark = pytest.mark.process  # a real server under load

CLIENTS = 32
REQUESTS = 2000
LATENCY_S = 0.05  # the fixed backend's answer time, per LLM call
TIME_LIMIT_S = 300


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def _drive(base: str, headers: dict[str, str]) -> tuple[list[float], list[float], list[str], float]:
    latencies: list[float] = []
    overheads: list[float] = []
    errors: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(REQUESTS):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as client:

        async def one_client() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                product = {"id": f"p{i}", "title": f"{TITLES[i % len(TITLES)]} item {i}"}
                start = time.perf_counter()
                try:
                    r = await client.post("/v1/tags", json=product)
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                elapsed = time.perf_counter() - start
                if r.status_code != 200:
                    errors.append(f"{r.status_code}: {r.text[:200]}")
                    continue
                body = r.json()
                latencies.append(elapsed)
                overheads.append(elapsed - body["evidence"]["llm"]["attempts"] * LATENCY_S)

        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(one_client() for _ in range(CLIENTS))), TIME_LIMIT_S)
        wall = time.perf_counter() - start
    return latencies, overheads, errors, wall


def test_32_clients_2000_requests_no_errors(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    env = {
        "TAGSMITH_DATA_DIR": str(shop_dir), "TAGSMITH_TAGGING__PIPELINE": "rag",
        "TAGSMITH_LIMITS__RATE_PER_S": "100000", "TAGSMITH_LIMITS__RATE_BURST": "100000",
        "TAGSMITH_LOG_LEVEL": "warning", **HASHING_ENV,
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(port, env, module="tests.serve.fixed_latency_server", args=["--port", str(port), "--latency", str(LATENCY_S)])
    try:
        wait_ready(proc, base, env)
        latencies, overheads, errors, wall = asyncio.run(_drive(base, auth(keys["tags"])))
        metrics = httpx.get(f"{base}/metrics", timeout=30).text
    finally:
        stop_server(proc)
    assert errors == [], errors[:5]
    assert len(latencies) == REQUESTS
    ms = [x * 1000 for x in latencies]
    over = [x * 1000 for x in overheads]
    print(
        f"\n{REQUESTS} requests, {CLIENTS} clients, backend {LATENCY_S * 1000:.0f} ms/call: "
        f"{REQUESTS / wall:.0f} req/s in {wall:.1f} s; latency p50 {percentile(ms, 50):.0f} ms, "
        f"p99 {percentile(ms, 99):.0f} ms; service overhead p50 {percentile(over, 50):.0f} ms, "
        f"p99 {percentile(over, 99):.0f} ms, mean {statistics.fmean(over):.0f} ms"
    )
    batches = [line for line in metrics.splitlines() if line.startswith("tagsmith_engine_batch_products_")]
    print("\n".join(batches))
    assert 'tagsmith_tagged_products_total{pipeline="rag",source="api"} 2000.0' in metrics
