"""The shipped examples are valid records tagged with real leaves of the default taxonomy."""

from __future__ import annotations

from collections import Counter

from retrieval import packaged_examples
from taxonomy import load_default_taxonomy


def test_shipped_examples_validate_against_the_default_taxonomy() -> None:
    snap = load_default_taxonomy()
    examples = packaged_examples()
    assert len(examples) >= 150
    ids = [e.id for e in examples]
    assert len(set(ids)) == len(ids)
    bad = [(e.id, t) for e in examples for t in e.tags if t not in snap.active_leaf_ids]
    assert not bad, f"tags that are not active leaves of the default taxonomy: {bad[:10]}"
    assert all(e.tags and e.title.strip() and e.description.strip() for e in examples)
    verticals = Counter(snap.path(e.tags[0])[0] for e in examples)
    assert len(verticals) >= 15  # varied, not one vertical
