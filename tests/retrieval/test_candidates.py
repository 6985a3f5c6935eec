from __future__ import annotations

import pytest

from retrieval import (
    CandidateConfig,
    CandidateGenerator,
    Example,
    SentenceTransformerEmbedder,
    build_index,
)
from taxonomy import Snapshot

from .conftest import TINY_EXAMPLES


@pytest.fixture
def gen(embedder: SentenceTransformerEmbedder, tiny: Snapshot) -> CandidateGenerator:
    return CandidateGenerator(embedder, tiny, build_index(embedder, TINY_EXAMPLES))


def test_batched_candidates_rank_the_right_leaf_first(gen: CandidateGenerator) -> None:
    products = [
        Example("q1", "Vintage band t-shirt", "100% cotton tee, unisex"),
        Example("q2", "Cast iron skillet 26 cm", "Pre-seasoned frying pan"),
        "espresso and filter coffee machine",
    ]
    results = gen.retrieve(products)
    assert [r.candidates[0].id for r in results] == ["tees", "pans", "coffee-makers"]
    for r in results:
        scores = [c.score for c in r.candidates]
        assert scores == sorted(scores, reverse=True)
        assert {c.id for c in r.candidates} <= gen.allowed  # only active leaves come out
    top = results[0].candidates[0]
    assert "example:e1" in top.sources and top.vote > 0.3 and top.similarity > 0


def test_deprecated_tags_are_remapped_or_dropped(gen: CandidateGenerator) -> None:
    [result] = gen.retrieve([Example("q", "Graphic print tee for men", "Regular fit cotton t-shirt")])
    by_id = {nb.example.id: nb for nb in result.neighbours}
    assert by_id["e2"].tags == ("tees",)  # tees-old was merged into tees
    assert "e5" not in by_id  # socks-old has no replacement: the example cannot vote
    assert all(c.id not in {"tees-old", "socks-old"} for c in result.candidates)
    tees = next(c for c in result.candidates if c.id == "tees")
    assert "example:e2" in tees.sources  # the remapped example voted for the new id


def test_roll_up_lifts_leaves_of_a_supported_branch(embedder: SentenceTransformerEmbedder, tiny: Snapshot) -> None:
    index = build_index(embedder, TINY_EXAMPLES)
    no_tax = CandidateConfig(taxonomy_weight=0.0, rollup=0.0)
    with_rollup = CandidateConfig(taxonomy_weight=0.0, rollup=0.5)
    q = [Example("q", "Stainless saucepan with lid", "")]
    flat = CandidateGenerator(embedder, tiny, index, config=no_tax).retrieve(q)[0]
    rolled = CandidateGenerator(embedder, tiny, index, config=with_rollup).retrieve(q)[0]
    pans_flat = next(c for c in flat.candidates if c.id == "pans")
    pans_rolled = next(c for c in rolled.candidates if c.id == "pans")
    # pans' parent (cookware) collects the pots+pans votes: the roll-up adds half of it
    assert pans_rolled.score > pans_flat.score
    assert pans_rolled.score == pytest.approx(pans_flat.vote + 0.5 * (pans_flat.vote + next(
        c.vote for c in flat.candidates if c.id == "pots")), abs=1e-6)


def test_empty_pool_uses_taxonomy_search_only(embedder: SentenceTransformerEmbedder, tiny: Snapshot) -> None:
    for index in (None, build_index(embedder, [])):
        gen = CandidateGenerator(embedder, tiny, index)
        [r1, r2] = gen.retrieve(["hooded sweatshirt", "non-stick skillet"])
        assert r1.neighbours == () and r1.candidates[0].id == "hoodies"
        assert r2.candidates[0].id == "pans"  # reached through the synonym "skillet" too
        assert r1.candidates[0].sources == ("taxonomy",) and r1.candidates[0].vote == 0.0


def test_allowed_ids_restrict_candidates(embedder: SentenceTransformerEmbedder, tiny: Snapshot) -> None:
    gen = CandidateGenerator(
        embedder, tiny, build_index(embedder, TINY_EXAMPLES), allowed={"tops", "cookware", "socks"}
    )
    [r] = gen.retrieve(["cotton t-shirt"])
    assert r.candidates[0].id == "tops"
    assert {c.id for c in r.candidates} <= {"tops", "cookware", "socks"}
    with pytest.raises(ValueError, match="not active"):
        CandidateGenerator(embedder, tiny, None, allowed={"tees-old"})


def test_no_products_no_work(gen: CandidateGenerator) -> None:
    assert gen.retrieve([]) == []
