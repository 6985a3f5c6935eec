"""The real MiniLM embedder says what it cannot read, and a Chinese dress title next to one
Chinese tea example goes to review as ``unreadable_text`` (the case reported in issue 20)."""

from __future__ import annotations

import pytest

from agent.contract import Product
from agent.tagger import Tagger, TaggerConfig
from retrieval import CandidateGenerator, Example, SentenceTransformerEmbedder, build_index
from tests.retrieval.test_calibration import craft_examples, craft_snapshot

pytestmark = pytest.mark.model


def test_minilm_reads_latin_script_only(embedder: SentenceTransformerEmbedder) -> None:
    assert embedder.scripts == frozenset({"LATIN"})  # from its vocabulary, not a list in the code
    english, chinese, russian, mixed = embedder.unreadable(
        ["Merino wool hiking socks", "女士夏季碎花雪纺连衣裙", "Платье женское летнее", "Merino wool 羊毛袜"]
    )
    assert english == 0.0 and chinese == 1.0 and russian == 1.0 and 0.0 < mixed < 1.0


def test_a_chinese_dress_next_to_one_chinese_tea_example_is_flagged(embedder: SentenceTransformerEmbedder) -> None:
    snap = craft_snapshot()
    examples = [*craft_examples(4), Example("tea-zh", "中国绿茶 西湖龙井 250克", tags=("tea",))]
    generator = CandidateGenerator(embedder, snap, build_index(embedder, examples))
    tagger = Tagger(generator, None, config=TaggerConfig(pipeline="knn", attributes="off"))
    result = tagger.tag(Product(title="女士夏季碎花雪纺连衣裙 长款"))
    assert result.needs_review and "unreadable_text" in result.evidence.review_reasons
    assert "unreadable_text" not in tagger.tag(Product(title="floral summer maxi dress")).evidence.review_reasons
