"""Plain text search over names and synonyms (for editors and the CLI, not for tagging:
retrieval/ does semantic search)."""

from __future__ import annotations

from pydantic import BaseModel

from taxonomy.lookalike import strip_accents
from taxonomy.snapshot import Snapshot


class SearchHit(BaseModel):
    id: str
    name: str
    path: str
    score: float
    matched: str


def _fold(text: str) -> str:
    return strip_accents(text).casefold()


def search(snapshot: Snapshot, text: str, *, limit: int = 20, include_deprecated: bool = False) -> list[SearchHit]:
    """Nodes whose id, name or synonyms contain every word of ``text``, best first: exact
    id/name, then prefix, then all words in the name, then in a synonym, then in the path."""
    query = _fold(text).strip()
    words = query.split()
    if not words:
        return []
    hits: list[SearchHit] = []
    for node in snapshot.nodes.values():
        if node.deprecated and not include_deprecated:
            continue
        name = _fold(node.name)
        score, matched = 0.0, ""
        if query in (name, node.id.casefold()):
            score, matched = 5.0, node.name
        elif name.startswith(query):
            score, matched = 4.0, node.name
        elif all(w in name for w in words):
            score, matched = 3.0, node.name
        else:
            synonym = next((s for s in node.synonyms if all(w in _fold(s) for w in words)), None)
            if synonym is not None:
                score, matched = 2.0, synonym
            elif all(w in _fold(snapshot.path_text(node.id)) for w in words):
                score, matched = 1.0, snapshot.path_text(node.id)
        if score:
            # shallower nodes first among equals: they are the likelier intent of a short query
            hits.append(SearchHit(id=node.id, name=node.name, path=snapshot.path_text(node.id),
                                  score=score - node.level / 100, matched=matched))
    hits.sort(key=lambda h: (-h.score, h.path))
    return hits[:limit]
