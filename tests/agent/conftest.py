"""Fixtures shared by the agent tests: the MWPD taxonomy with an index of 400 pool examples
(real embedder) and real dev products, all read from ../shared (skipped when absent)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from agent.contract import Product
from retrieval import CandidateGenerator, Example, SentenceTransformerEmbedder, build_index
from taxonomy import Snapshot, load_taxonomy
from tests.conftest import shared_file


def read_shared_jsonl(path: str, n: int) -> list[dict[str, object]]:
    """The first ``n`` records of a JSONL file of ../shared/data."""
    with shared_file(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for _, line in zip(range(n), fh, strict=False)]


@pytest.fixture(scope="session")
def generator() -> Iterator[CandidateGenerator]:
    """Read-only once built, so one per session (building it embeds 400 texts)."""
    snap: Snapshot = load_taxonomy(shared_file("mwpd/taxonomy.json"), "json")
    pool = read_shared_jsonl("mwpd/pool.jsonl", 400)
    examples = [
        Example(id=str(r["id"]), title=str(r["title"]), description=str(r["description"])[:300],
                tags=[str(r["gold_leaf"])])
        for r in pool
    ]
    embedder = SentenceTransformerEmbedder()
    yield CandidateGenerator(embedder, snap, build_index(embedder, examples))


@pytest.fixture(scope="module")
def dev_products() -> list[tuple[Product, str]]:
    """(product, gold leaf) for the first 40 MWPD dev items."""
    return [
        (Product(id=str(r["id"]), title=str(r["title"]) or "untitled", description=str(r["description"])[:500]),
         str(r["gold_leaf"]))
        for r in read_shared_jsonl("mwpd/dev.jsonl", 40)
    ]
