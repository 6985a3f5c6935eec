"""Per-request cost of the output constraint as the allowed-id list grows (issue 8, item 4).

tagsmith constrains each LLM request to its candidate list (8 letters), never to the whole
taxonomy; this measures what constraining to large lists of real Shopify category ids
(100, 1,000, 2,000, 10,000 of the 10,281) would cost on each backend, and what fails:

- ``embedded``: llama.cpp, the schema compiled to a GBNF grammar (cached per schema);
- ``vllm json_schema``: ``response_format`` json_schema with an ``enum`` (xgrammar);
- ``vllm choice``: ``structured_outputs.choice`` with the ids as plain strings.

Per list: the first request with that list (``cold``: the grammar is compiled) and the
median of ``--repeats`` more with the same list (``warm``: compiled grammar cached), each
answering the same short product prompt; ``ok`` = every answer parsed and on the list.
Requests run one at a time. Usage::

    .venv/bin/python -m evals.benchmarks.constraint_overhead --base-url http://127.0.0.1:8001/v1
    .venv/bin/python -m evals.benchmarks.constraint_overhead --skip-embedded-above 2000 ...
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.llm import ChatMessage, LLMBackend, LLMError, create_backend, tags_schema

REPO = Path(__file__).resolve().parents[2]
SHOPIFY = REPO.parent / "shared" / "data" / "taxonomies" / "shopify_categories_2024-07.json"
SIZES = (8, 100, 1_000, 2_000, 10_000)
LETTERS = [chr(ord("A") + i) for i in range(8)]
PROMPT = [
    ChatMessage("system", "You tag products with one category id from the allowed list."),
    ChatMessage("user", "Product: stainless steel french press coffee maker, 1 l.\nAnswer with one category id."),
]
MAX_TOKENS = 48  # Shopify gids are ~15-20 tokens; the answer must fit whole


@dataclass(frozen=True)
class Result:
    backend: str
    size: int
    cold_ms: float | None
    warm_ms: float | None
    ok: str

    def cells(self) -> list[str]:
        def fmt(v: float | None) -> str:
            return "–" if v is None else f"{v:,.0f}"

        return [self.backend, f"{self.size:,}", fmt(self.cold_ms), fmt(self.warm_ms), self.ok]


def shopify_ids() -> list[str]:
    nodes = json.loads(SHOPIFY.read_text(encoding="utf-8"))["nodes"]
    return [str(n["id"]) for n in nodes]


def allowed_list(size: int, ids: Sequence[str]) -> list[str]:
    """The 8 candidate letters tagsmith sends, or the first ``size`` Shopify ids."""
    return list(LETTERS) if size == len(LETTERS) else list(ids[:size])


Ask = Callable[[list[str]], tuple[float, bool]]


def schema_asker(llm: LLMBackend) -> Ask:
    def ask(allowed: list[str]) -> tuple[float, bool]:
        start = time.perf_counter()
        gen = llm.generate(PROMPT, tags_schema(allowed), max_tokens=MAX_TOKENS)
        ms = (time.perf_counter() - start) * 1000.0
        tags = gen.parsed.get("tags") if isinstance(gen.parsed, dict) else None
        return ms, isinstance(tags, list) and bool(tags) and all(t in allowed for t in tags)

    return ask


def choice_asker(base_url: str) -> Ask:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="EMPTY", timeout=600.0, max_retries=0)

    def ask(allowed: list[str]) -> tuple[float, bool]:
        start = time.perf_counter()
        resp = client.chat.completions.create(
            model="tagsmith", messages=[m.as_dict() for m in PROMPT],  # type: ignore[misc]
            max_tokens=MAX_TOKENS, temperature=0.0,
            extra_body={"structured_outputs": {"choice": allowed}},
        )
        ms = (time.perf_counter() - start) * 1000.0
        return ms, (resp.choices[0].message.content or "") in allowed

    return ask


def run(backend: str, ask: Ask, sizes: Sequence[int], ids: Sequence[str], repeats: int) -> list[Result]:
    results = []
    for size in sizes:
        allowed = allowed_list(size, ids)
        try:
            cold, ok = ask(allowed)
            warm = [ask(allowed) for _ in range(repeats)]
        except (LLMError, Exception) as exc:  # record what fails, keep measuring the rest
            results.append(Result(backend, size, None, None, f"failed: {str(exc)[:120]}"))
            print(results[-1].cells(), flush=True)
            continue
        all_ok = ok and all(w[1] for w in warm)
        results.append(
            Result(backend, size, cold, statistics.median(w[0] for w in warm) if warm else None,
                   "yes" if all_ok else "answer not on the list")
        )
        print(results[-1].cells(), flush=True)
    return results


def markdown(results: Sequence[Result]) -> str:
    header = ["backend", "allowed ids", "cold ms (first request)", "warm ms (median)", "ok"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r.cells()) + " |" for r in results])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="constraint overhead vs allowed-list size")
    parser.add_argument("--base-url", help="vLLM server (omit to measure the embedded backend only)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-embedded-above", type=int, default=None,
                        help="do not run the embedded backend on lists longer than this")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    ids = shopify_ids()
    results: list[Result] = []
    if args.base_url:
        served = create_backend("openai", base_url=args.base_url, timeout_s=600.0, max_retries=0)
        results += run("vllm json_schema (enum)", schema_asker(served), sizes, ids, args.repeats)
        results += run("vllm structured_outputs choice", choice_asker(args.base_url), sizes, ids, args.repeats)
        served.close()
    embedded = create_backend("embedded")
    limit = args.skip_embedded_above
    results += run("embedded llama.cpp (GBNF)", schema_asker(embedded),
                   [s for s in sizes if limit is None or s <= limit], ids, args.repeats)
    embedded.close()
    print(f"\n{len(ids):,} Shopify category ids available\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
