"""The lexical classifier: training, pickle-free persistence, fusion into the candidates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retrieval import (
    CandidateConfig,
    CandidateGenerator,
    Example,
    IndexCorruptError,
    IndexStore,
    LexicalClassifier,
    LexicalConfig,
    SentenceTransformerEmbedder,
    build_index,
)
from taxonomy import Snapshot

from .conftest import TINY_EXAMPLES

EVERY_TAG = LexicalConfig(min_class_examples=1)  # the tiny fixtures have one example per tag

# product lines whose decisive token ("XK-9" vs "ZT-4") carries no meaning for an embedder
CODED = [
    Example(f"k{i}", f"Acme XK-9 spare part {i}", "replacement module", ("pans",)) for i in range(6)
] + [Example(f"z{i}", f"Acme ZT-4 spare part {i}", "replacement module", ("pots",)) for i in range(6)]


def test_fit_learns_discriminative_tokens() -> None:
    clf = LexicalClassifier.fit(CODED)
    assert clf is not None and set(clf.classes) == {"pans", "pots"}
    margins = clf.decision(["Acme XK-9 spare part 99", "Acme ZT-4 spare part 99"])
    assert margins.shape == (2, 2)
    pans, pots = clf.position["pans"], clf.position["pots"]
    assert margins[0, pans] > margins[0, pots] and margins[1, pots] > margins[1, pans]


def test_needs_two_tags_with_enough_examples() -> None:
    assert LexicalClassifier.fit([e for e in CODED if e.tags == ("pans",)]) is None
    assert LexicalClassifier.fit([]) is None
    # one example per tag (like the shipped examples): nothing a classifier can learn
    assert LexicalClassifier.fit(TINY_EXAMPLES) is None
    rare = LexicalClassifier.fit([*CODED, *TINY_EXAMPLES])
    assert rare is not None and set(rare.classes) == {"pans", "pots"}


def test_files_round_trip_without_pickle() -> None:
    clf = LexicalClassifier.fit(TINY_EXAMPLES, EVERY_TAG)
    assert clf is not None
    files = clf.to_files()
    again = LexicalClassifier.from_files(files)
    queries = ["cotton tee shirt", "stock pot with lid", "coffee machine"]
    np.testing.assert_allclose(clf.decision(queries), again.decision(queries), rtol=1e-6)
    assert again.to_files() == files  # deterministic bytes
    meta = json.loads(files["lexical.json"])
    assert meta["n_examples"] == len(TINY_EXAMPLES)


def test_store_publishes_and_verifies_the_classifier(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    index = build_index(embedder, TINY_EXAMPLES)
    clf = LexicalClassifier.fit(TINY_EXAMPLES, EVERY_TAG)
    store = IndexStore(tmp_path)
    manifest = store.publish(index, embedder=embedder.name, lexical=clf)
    assert manifest.extra["lexical"]["examples"] == len(TINY_EXAMPLES)
    loaded_index, loaded_clf, _ = store.load_bundle(embedder=embedder.name, dim=embedder.dim)
    assert len(loaded_index) == len(index) and loaded_clf is not None
    assert loaded_clf.classes == clf.classes
    # published without one: the bundle says so instead of inventing a classifier
    store.publish(index, embedder=embedder.name)
    assert store.load_bundle(embedder=embedder.name, dim=embedder.dim)[1] is None
    # a damaged classifier file refuses the whole generation
    store.publish(index, embedder=embedder.name, lexical=clf)
    generation = store.manifest().generation
    path = tmp_path / generation / "lexical_coef.npz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(IndexCorruptError, match=r"lexical_coef\.npz"):
        store.load_bundle(embedder=embedder.name, dim=embedder.dim)


def test_fusion_adds_lexical_candidates_and_calibrated_probabilities(
    embedder: SentenceTransformerEmbedder, tiny: Snapshot
) -> None:
    examples = [*TINY_EXAMPLES, *CODED]
    index = build_index(embedder, examples)
    clf = LexicalClassifier.fit(examples)
    fused = CandidateGenerator(embedder, tiny, index, lexical=clf)
    query = [Example("q", "Acme ZT-4 spare part", "replacement module")]
    [with_lexical] = fused.retrieve(query)
    [without] = fused.retrieve(query, lexical=False)
    top = with_lexical.candidates[0]
    assert top.id == "pots" and "lexical" in top.sources and top.margin > 0
    assert all(c.margin == 0.0 and "lexical" not in c.sources for c in without.candidates)
    probs = [c.probability for c in with_lexical.candidates]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1.0, abs=1e-6)
    # the temperature only sharpens or flattens: the ranking stays the same
    sharp = CandidateGenerator(embedder, tiny, index, lexical=clf, config=CandidateConfig(temperature=0.1))
    [sharp_result] = sharp.retrieve(query)
    assert [c.id for c in sharp_result.candidates] == [c.id for c in with_lexical.candidates]
    assert sharp_result.candidates[0].probability > top.probability


def test_deprecated_classes_are_remapped(embedder: SentenceTransformerEmbedder, tiny: Snapshot) -> None:
    # trained on "tees-old" (merged into "tees" since): its margin must count for "tees"
    examples = [
        Example("a", "Graphic print tee", "cotton t-shirt", ("tees-old",)),
        Example("b", "Printed tee shirt", "cotton tee", ("tees-old",)),
        Example("c", "Frying pan 28 cm", "non-stick skillet", ("pans",)),
        Example("d", "Skillet cast iron", "frying pan", ("pans",)),
    ]
    clf = LexicalClassifier.fit(examples, EVERY_TAG)
    gen = CandidateGenerator(embedder, tiny, build_index(embedder, examples), lexical=clf)
    [result] = gen.retrieve(["printed cotton tee"])
    assert result.candidates[0].id == "tees"
    assert all(c.id != "tees-old" for c in result.candidates)
