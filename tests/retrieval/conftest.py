"""Fixtures of the retrieval tests: the real (small) embedder once per session, a tiny taxonomy."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from retrieval import Example, SentenceTransformerEmbedder
from taxonomy import Node, Snapshot, TaxonomyDocument


@pytest.fixture(scope="session")
def embedder() -> Iterator[SentenceTransformerEmbedder]:
    yield SentenceTransformerEmbedder(batch_size=32)


def tiny_snapshot(version: int = 1) -> Snapshot:
    """Two verticals; ``tees-old`` was merged into ``tees``; ``socks-old`` deprecated with no
    replacement."""
    n = Node.model_validate
    nodes = [
        n({"id": "apparel", "name": "Apparel"}),
        n({"id": "tops", "name": "Tops", "parent": "apparel"}),
        n({"id": "tees", "name": "T-Shirts", "parent": "tops", "synonyms": ["tee", "tshirt"]}),
        n({"id": "hoodies", "name": "Hoodies", "parent": "tops"}),
        n({"id": "tees-old", "name": "Tee Shirts", "parent": "tops", "deprecated": True, "replaced_by": "tees"}),
        n({"id": "socks", "name": "Socks", "parent": "apparel"}),
        n({"id": "socks-old", "name": "Hosiery", "parent": "apparel", "deprecated": True}),
        n({"id": "kitchen", "name": "Kitchen"}),
        n({"id": "cookware", "name": "Cookware", "parent": "kitchen"}),
        n({"id": "pans", "name": "Frying Pans", "parent": "cookware", "synonyms": ["skillet"]}),
        n({"id": "pots", "name": "Stock Pots", "parent": "cookware"}),
        n({"id": "coffee-makers", "name": "Coffee Makers", "parent": "kitchen"}),
    ]
    return Snapshot(TaxonomyDocument(name="tiny", nodes=tuple(nodes)), version=version)


TINY_EXAMPLES = [
    Example("e1", "Cotton crew neck t-shirt", "Soft short sleeve tee in white", ("tees",)),
    Example("e2", "Graphic print tee for men", "Regular fit cotton t-shirt", ("tees-old",)),
    Example("e3", "Fleece pullover hoodie", "Warm hooded sweatshirt with pocket", ("hoodies",)),
    Example("e4", "Wool hiking socks", "Cushioned crew socks, 3 pairs", ("socks",)),
    Example("e5", "Nylon ankle hosiery", "Sheer ankle-high stockings", ("socks-old",)),
    Example("e6", "Non-stick frying pan 28 cm", "Aluminium skillet with ceramic coating", ("pans",)),
    Example("e7", "Stainless steel stock pot 8 L", "Large pot with lid for soups", ("pots",)),
    Example("e8", "Drip coffee machine 12 cup", "Filter coffee maker with glass carafe", ("coffee-makers",)),
]


@pytest.fixture
def tiny() -> Snapshot:
    return tiny_snapshot()


def random_vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)
