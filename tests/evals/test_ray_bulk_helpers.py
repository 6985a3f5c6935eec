"""The Ray bulk benchmark's helpers (no Ray, no model): comparing two engines' outputs id by
id, emptying a vLLM server's prefix cache (a loopback stand-in for vLLM's dev endpoint), and
the CPU of an already-running process counted from the start of the sampling only. Default
tier: a loopback HTTP server thread, well under a second."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from evals.benchmarks.ray_bulk import RssSampler, reset_prefix_cache, same_tags


def _result(pid: str, *tags: str) -> str:
    return json.dumps({
        "id": pid, "tags": [{"id": t, "name": t, "path": [t], "confidence": 0.9} for t in tags],
        "needs_review": False, "taxonomy_version": 1, "pipeline": "rag",
        "evidence": {"neighbors": [], "llm": {"attempts": 1, "fallback_used": False}},
        "timings_ms": {"retrieval": 1.0, "llm": 2.0, "validation": 0.1, "total": 3.1},
    }) + "\n"


def test_same_tags_compares_id_by_id_whatever_the_order(tmp_path: Path) -> None:
    ref, other = tmp_path / "ref.jsonl", tmp_path / "other.jsonl"
    ref.write_text(_result("a", "x") + _result("b", "y", "z") + _result("c", "x") + _result("d", "y"))
    # other order, b's second tag differs, c's first tag differs, d missing, e extra
    other.write_text(_result("c", "y") + _result("b", "y") + _result("a", "x") + _result("e", "x"))
    got = same_tags(ref, other)
    assert (got["products"], got["missing"], got["extra"]) == (3, 1, 1)
    assert got["same_tags"] == 1 and got["same_first_tag"] == 2
    assert [d["id"] for d in got["first_differing"]] == ["b", "c"]
    assert got["first_differing"][1] == {"id": "c", "reference": ["x"], "other": ["y"]}


class _Vllm(BaseHTTPRequestHandler):
    answers: ClassVar[list[tuple[int, bytes]]] = []
    paths: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.paths.append(self.path)
        status, body = self.answers.pop(0)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def vllm_stub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Vllm)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    _Vllm.answers, _Vllm.paths = [], []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_reset_prefix_cache_posts_beside_v1_and_reports_failures(vllm_stub: str) -> None:
    _Vllm.answers = [(200, b'{"success": true}'), (200, b'{"success": false}'), (404, b'{"detail": "Not Found"}')]
    assert reset_prefix_cache([vllm_stub]) is True
    assert _Vllm.paths == ["/reset_prefix_cache"]  # the server's root, not under /v1
    assert reset_prefix_cache([vllm_stub]) is False  # busy: vLLM refuses while requests run
    assert reset_prefix_cache([vllm_stub]) is False  # not in dev mode
    assert reset_prefix_cache(["http://127.0.0.1:9/v1"]) is False  # nothing listening


def test_sampler_counts_a_running_process_cpu_from_the_start_only() -> None:
    start = time.process_time()
    while time.process_time() - start < 0.3:  # CPU spent before the sampling starts
        pass
    with RssSampler(0.05, since_start=True) as since, RssSampler(0.05) as whole:
        time.sleep(0.3)
    assert whole.cpu_s >= 0.3  # this process's CPU since it started
    assert since.cpu_s < 0.2  # only what it spent while sleeping
    assert since.peak_mb > 1 and whole.peak_mb > 1
