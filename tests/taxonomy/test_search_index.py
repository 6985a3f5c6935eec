"""The indexed search (taxonomy/search.py) ranks exactly like a full scan, and caches."""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable, Iterator
from functools import cache

import pytest

from taxonomy import Node, SearchHit, Snapshot, TaxonomyDocument, load_default_taxonomy, search
from taxonomy.search import SearchIndex, search_index

# the module itself (``taxonomy.search`` the attribute is the function the package exports)
search_module = importlib.import_module("taxonomy.search")


def brute_force(
    snapshot: Snapshot, text: str, *, limit: int = 20, include_deprecated: bool = False,
    fold: Callable[[str], str] = search_module._fold,
) -> list[SearchHit]:
    """The search as it was before the index: every node scored, then sorted."""
    query = fold(text).strip()
    words = query.split()
    if not words:
        return []
    hits: list[SearchHit] = []
    for node in snapshot.nodes.values():
        if node.deprecated and not include_deprecated:
            continue
        name = fold(node.name)
        score, matched = 0.0, ""
        if query in (name, node.id.casefold()):
            score, matched = 5.0, node.name
        elif name.startswith(query):
            score, matched = 4.0, node.name
        elif all(w in name for w in words):
            score, matched = 3.0, node.name
        else:
            synonym = next((s for s in node.synonyms if all(w in fold(s) for w in words)), None)
            if synonym is not None:
                score, matched = 2.0, synonym
            elif all(w in fold(snapshot.path_text(node.id)) for w in words):
                score, matched = 1.0, snapshot.path_text(node.id)
        if score:
            hits.append(SearchHit(id=node.id, name=node.name, path=snapshot.path_text(node.id),
                                  score=score - node.level / 100, matched=matched))
    hits.sort(key=lambda h: (-h.score, h.path))
    return hits[:limit]


@cache
def default_snapshot() -> Snapshot:
    return load_default_taxonomy()


DEFAULT_QUERIES = [
    "shirt", "T-Shirts", "dog food", "cast iron skillet", "a", "tv", "apparel", "zzzz",
    "Baby & Toddler", "a e", ">", "s > a", "toys", "  SHOES ", "éé", "gid://shopify/taxonomycategory/aa",
]


def test_indexed_search_equals_the_full_scan_on_the_default_taxonomy() -> None:
    snap = default_snapshot()
    for query in DEFAULT_QUERIES:
        assert search(snap, query) == brute_force(snap, query), query
    for query in ("a", "shirts", "oo"):
        assert search(snap, query, limit=200) == brute_force(snap, query, limit=200), query
    assert search(snap, "   ") == []


_WORDS = ["Café", "Crème", "Shirt", "T-Shirts", "Tee", "Shoes", "Socks", "Dog", "Food", "Toys", "Baby",
          "Äpfel", "STRASSE", "Straße", "a", "Kit", "Kits", "Pan", "Pans", "Other", "Brot"]


def random_document(seed: int) -> TaxonomyDocument:
    """A few hundred nodes of shuffled words: repeated names, accents, synonyms, deprecated
    nodes, ids that equal other names, and one chain deeper than 100 levels (scores of
    different kinds then interleave)."""
    rng = random.Random(seed)
    nodes: list[Node] = []
    for i in range(300):
        parent = rng.choice(nodes).id if nodes and rng.random() < 0.8 else None
        name = " ".join(rng.sample(_WORDS, rng.randint(1, 3)))
        synonyms = tuple(" ".join(rng.sample(_WORDS, 2)) for _ in range(rng.randint(0, 2)))
        node_id = rng.choice([f"n{i}", f"N{i}/{rng.choice(_WORDS)}", f"{rng.choice(_WORDS).lower()}{i}"])
        nodes.append(Node(id=node_id, name=name, parent=parent, synonyms=synonyms))
    for i, node in enumerate(nodes):  # deprecate some, each pointing to an earlier active node
        if i > 10 and rng.random() < 0.1:
            nodes[i] = node.model_copy(update={"deprecated": True, "replaced_by": nodes[rng.randrange(i)].id})
    parent = None
    for depth in range(110):  # ASCII names: folding the long paths stays quick
        nodes.append(Node(id=f"deep{depth}", name=f"{rng.choice(['Kit', 'Pan', 'Tee'])} deep", parent=parent))
        parent = f"deep{depth}"
    return TaxonomyDocument(name=f"random {seed}", nodes=tuple(nodes))


def random_queries(snap: Snapshot, seed: int) -> Iterator[str]:
    rng = random.Random(seed)
    nodes = list(snap.nodes.values())
    for _ in range(60):
        node = rng.choice(nodes)
        source = rng.choice([node.name, snap.path_text(node.id), *node.synonyms, node.id])
        start = rng.randrange(len(source))
        piece = source[start : start + rng.randint(1, 12)]
        yield rng.choice([piece, piece.upper(), f"{piece} {rng.choice(_WORDS)[:2]}", rng.choice("aeo> ")])


@pytest.mark.parametrize("seed", [1, 2])
def test_indexed_search_equals_the_full_scan_on_random_taxonomies(seed: int) -> None:
    snap = Snapshot(random_document(seed))
    for query in random_queries(snap, seed):
        for limit, deprecated in ((20, False), (200, True)):
            expected = brute_force(snap, query, limit=limit, include_deprecated=deprecated)
            assert search(snap, query, limit=limit, include_deprecated=deprecated) == expected, query


def test_a_fold_that_does_not_split_at_the_separator_still_finds_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The subtree filter relies on a folded path being its folded names joined; nodes where
    that fails are scanned every time. A fold that breaks it on long texts must not lose hits."""

    def odd_fold(text: str) -> str:
        folded = text.casefold()
        return folded.replace(" > ", " >q") if len(text) > 30 else folded

    monkeypatch.setattr(search_module, "_fold", odd_fold)
    snap = Snapshot(random_document(3))
    index = SearchIndex(snap)
    assert index._irregular, "the odd fold should make some paths irregular"
    for query in [">q", "q", "deep >q", *random_queries(snap, 3)]:
        expected = brute_force(snap, query, limit=50, fold=odd_fold)
        assert index.search(query, limit=50) == expected, query


def test_one_index_per_snapshot_and_repeated_queries_come_from_the_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    snap = Snapshot(random_document(4))
    index = search_index(snap)
    assert search_index(snap) is index
    assert search_index(snap.with_version(9)) is not index  # another snapshot, its own index
    calls: list[str] = []
    original = SearchIndex._search

    def counting(self: SearchIndex, query: str, limit: int, include_deprecated: bool) -> list[SearchHit]:
        calls.append(query)
        return original(self, query, limit, include_deprecated)

    monkeypatch.setattr(SearchIndex, "_search", counting)
    first = search(snap, "Shoes")
    assert search(snap, "  shoes ") == first  # the same folded query: one computation
    assert calls == ["shoes"]
    search(snap, "shoes", limit=3)
    assert calls == ["shoes", "shoes"]  # another limit is another result
    first.clear()  # callers get their own list: the cached one is unchanged
    assert search(snap, "Shoes") != []
    for n in range(search_module.RESULT_CACHE_SIZE + 1):
        search(snap, f"q{n}")
    search(snap, "shoes")  # evicted by the newer queries: computed again
    assert calls[-1] == "shoes" and len(calls) == search_module.RESULT_CACHE_SIZE + 4
