from __future__ import annotations

import numpy as np
import pytest

from retrieval import Example, ExampleIndex

from .conftest import random_vectors


def ex(i: int | str, tag: str = "t") -> Example:
    return Example(f"p{i}", f"product {i}", tags=(tag,))


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_add_search_get(kind: str) -> None:
    vecs = random_vectors(50)
    index = ExampleIndex(16, kind=kind)  # type: ignore[arg-type]
    index.upsert([ex(i) for i in range(50)], vecs)
    assert len(index) == 50 and "p7" in index and "p50" not in index
    hits = index.search(vecs[[3, 9]], k=5)
    assert [h[0].id for h in hits] == ["p3", "p9"]  # a vector's nearest neighbour is itself
    assert hits[0][0].score == pytest.approx(1.0, abs=1e-4)
    assert all(len(h) == 5 for h in hits)
    assert index.get("p3") == ex(3)
    assert index.get("nope") is None
    np.testing.assert_allclose(index.vector("p3"), vecs[3], atol=1e-6)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_update_replaces_vector_and_record_under_the_same_id(kind: str) -> None:
    vecs = random_vectors(20)
    index = ExampleIndex(16, kind=kind)  # type: ignore[arg-type]
    index.upsert([ex(i) for i in range(20)], vecs)
    index.upsert([Example("p4", "renamed", tags=("new",))], vecs[[11]])
    assert len(index) == 20
    assert index.get("p4") == Example("p4", "renamed", tags=("new",))
    top = index.search(vecs[[11]], k=2)[0]
    assert {h.id for h in top} == {"p4", "p11"}
    assert index.search(vecs[[4]], k=1)[0][0].id != "p4"  # the old vector is gone


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_delete_single_and_batch(kind: str) -> None:
    vecs = random_vectors(30)
    index = ExampleIndex(16, kind=kind)  # type: ignore[arg-type]
    index.upsert([ex(i) for i in range(30)], vecs)
    assert index.delete(["p1"]) == 1
    assert index.delete(["p2", "p3", "p2", "unknown"]) == 2
    assert index.delete(["p1"]) == 0
    assert len(index) == 27 and "p2" not in index
    found = {h.id for row in index.search(vecs, k=30) for h in row}
    assert found.isdisjoint({"p1", "p2", "p3"})
    assert all(len(row) == 27 for row in index.search(vecs[:3], k=30))
    # deleting most of an HNSW index triggers a rebuild; results stay right
    index.delete([f"p{i}" for i in range(4, 25)])
    assert {h.id for h in index.search(vecs[[26]], k=10)[0]} == {"p0", *(f"p{i}" for i in range(25, 30))}


def test_batch_with_repeated_id_keeps_the_last() -> None:
    vecs = random_vectors(3)
    index = ExampleIndex(16)
    index.upsert([ex(1, "a"), ex(2), ex(1, "b")], vecs)
    assert len(index) == 2 and index.get("p1") == ex(1, "b")
    assert index.search(vecs[[2]], k=1)[0][0].id == "p1"


def test_edge_cases() -> None:
    index = ExampleIndex(16)
    assert index.search(random_vectors(2), k=3) == [[], []]
    with pytest.raises(ValueError, match="dimension 16"):
        index.upsert([ex(1)], random_vectors(1, dim=8))
    with pytest.raises(ValueError, match="1 examples but 2 vectors"):
        index.upsert([ex(1)], random_vectors(2))
    with pytest.raises(ValueError, match="unknown index kind"):
        ExampleIndex(16, kind="ivf")  # type: ignore[arg-type]


def test_hnsw_recall_against_exact_search() -> None:
    vecs = random_vectors(2000, dim=32, seed=1)
    queries = random_vectors(50, dim=32, seed=2)
    exact, approx = ExampleIndex(32), ExampleIndex(32, kind="hnsw")
    for index in (exact, approx):
        index.upsert([ex(i) for i in range(2000)], vecs)
    a, b = exact.search(queries, 10), approx.search(queries, 10)
    overlap = np.mean([len({h.id for h in x} & {h.id for h in y}) / 10 for x, y in zip(a, b, strict=True)])
    assert overlap > 0.9


def test_product_text_with_unicode_line_separators_survives_the_files() -> None:
    # JSON leaves U+0085, U+2028 and U+2029 raw (ensure_ascii=False); str.splitlines() splits
    # on them: a reviewer's correction of such a product once made every later feedback a 500
    odd = ["Mug\u2028with a line separator", "Lamp\x85next line", "Rug\u2029paragraph", "Tee\x1c\x1d\x1e\x0b\x0c"]
    examples = [Example(f"p{i}", title, description=title, tags=("t",)) for i, title in enumerate(odd)]
    index = ExampleIndex(16)
    index.upsert(examples, random_vectors(len(examples)))
    again = ExampleIndex.from_files(index.to_files())
    assert [again.get(e.id) for e in examples] == examples
