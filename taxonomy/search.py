"""Plain text search over names and synonyms (for editors and the CLI, not for tagging:
retrieval/ does semantic search).

Matching is by substring, so a query cannot be answered from a word index alone. Each
snapshot gets a :class:`SearchIndex`, built once on its first search (snapshots are
immutable): the folded names, synonyms and paths every query needs, and which names and
synonyms contain each character bigram and trigram. A word found in a node's path lies
inside the name of the node or of an ancestor (words hold no spaces, and the separator
does), so a query scores only the subtrees under the names that hold its rarest gram: a
superset of the matches, ranked exactly as a full scan would. That keeps a query on the
~10k-node default taxonomy well under a millisecond instead of ~100 ms (queries made only of
one-letter words have no gram and scan every node: 1-3 ms); recent results are cached per
snapshot too. Building the index costs ~0.25 s of CPU and ~13 MB on that taxonomy.
"""

from __future__ import annotations

import heapq
import threading
import weakref
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from itertools import islice

from pydantic import BaseModel, ConfigDict

from taxonomy.lookalike import strip_accents
from taxonomy.snapshot import Snapshot

#: recent queries remembered per snapshot (a result is ≤ 200 small hits)
RESULT_CACHE_SIZE = 256
#: grams indexed: shorter ones say too little to filter by, longer ones cost memory
_MIN_GRAM, _MAX_GRAM = 2, 3
_SEP = " > "  # Snapshot.path_text's separator


class SearchHit(BaseModel):
    # frozen: cached results are shared between callers
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    path: str
    score: float
    matched: str


def _fold(text: str) -> str:
    # ASCII has no accents to strip: the common case skips the per-character decomposition
    return text.casefold() if text.isascii() else strip_accents(text).casefold()


def _grams(text: str, size: int) -> set[str]:
    return {text[i : i + size] for i in range(len(text) - size + 1)}


def _postings(texts: Iterable[tuple[int, str]]) -> dict[str, array[int]]:
    """gram → ascending positions of the texts that contain it (arrays: 4 bytes an entry)."""
    out: dict[str, array[int]] = {}
    seen: dict[str, set[str]] = {}  # names repeat (e.g. "Other" under many parents)
    for i, text in texts:
        grams = seen.get(text)
        if grams is None:
            grams = seen[text] = set().union(*(_grams(text, n) for n in range(_MIN_GRAM, _MAX_GRAM + 1)))
        for gram in grams:
            bucket = out.get(gram)
            if bucket is None:
                out[gram] = bucket = array("I")
            bucket.append(i)
    return out


class SearchIndex:
    """The per-snapshot data of :func:`search`; build with :func:`search_index`."""

    def __init__(self, snapshot: Snapshot) -> None:
        nodes = list(snapshot.nodes.values())  # document order: the last tie-break, as before
        position = {n.id: i for i, n in enumerate(nodes)}
        self._ids = [n.id for n in nodes]
        self._names = [n.name for n in nodes]
        self._levels = [n.level for n in nodes]
        self._deprecated = [n.deprecated for n in nodes]
        self._folded_names = [_fold(n.name) for n in nodes]
        self._synonyms = [n.synonyms for n in nodes]
        self._folded_synonyms = [tuple(_fold(s) for s in n.synonyms) for n in nodes]
        self._paths = [snapshot.path_text(n.id, _SEP) for n in nodes]
        self._folded_paths = [_fold(p) for p in self._paths]
        self._deprecated_ids = [i for i in range(len(nodes)) if self._deprecated[i]]
        self._any_synonyms = any(self._folded_synonyms)
        self._by_folded_name: dict[str, list[int]] = {}
        for i, name in enumerate(self._folded_names):
            self._by_folded_name.setdefault(name, []).append(i)
        self._by_folded_id: dict[str, list[int]] = {}
        for i, n in enumerate(nodes):
            self._by_folded_id.setdefault(n.id.casefold(), []).append(i)

        # preorder: the subtree of node i is _preorder[_start[i]:_stop[i]]
        self._preorder: list[int] = []
        self._start = [0] * len(nodes)
        self._stop = [0] * len(nodes)
        stack = [(position[r], False) for r in reversed(snapshot.all_roots)]
        while stack:
            i, closing = stack.pop()
            if closing:
                self._stop[i] = len(self._preorder)
                continue
            self._start[i] = len(self._preorder)
            self._preorder.append(i)
            stack.append((i, True))
            kids = snapshot.children(self._ids[i], include_deprecated=True)
            stack.extend((position[c], False) for c in reversed(kids))

        # Folding a path is folding its names joined by the separator for all real text; a
        # node where it is not (and its subtree) is scanned by every query, so the subtree
        # filter can never lose a match.
        irregular: set[int] = set()
        for i, n in enumerate(nodes):
            parent = position[n.parent] if n.parent is not None else None
            joined = self._folded_names[i] if parent is None else self._folded_paths[parent] + _SEP + self._folded_names[i]
            if self._folded_paths[i] != joined:
                irregular.update(self._subtree(i))
        self._irregular = sorted(irregular)

        self._in_names = _postings(enumerate(self._folded_names))
        self._in_synonyms = _postings(
            (i, "\n".join(syns)) for i, syns in enumerate(self._folded_synonyms) if syns
        )
        # how many nodes a gram's subtrees (and synonyms) hold: the query filters by the smallest
        sizes = [b - a for a, b in zip(self._start, self._stop, strict=True)]
        self._weights: dict[str, int] = {}
        for gram, where in self._in_names.items():
            self._weights[gram] = sum(map(sizes.__getitem__, where))
        for gram, where in self._in_synonyms.items():
            self._weights[gram] = self._weights.get(gram, 0) + len(where)

        # a node's place in (level, path, document) order: how hits of one score are ranked
        order = sorted(range(len(nodes)), key=lambda i: (self._levels[i], self._paths[i], i))
        self._rank = [0] * len(nodes)
        for place, i in enumerate(order):
            self._rank[i] = place
        self._all_ranked = order
        self._active_ranked = [i for i in order if not self._deprecated[i]]
        self._results: OrderedDict[tuple[str, int, bool], list[SearchHit]] = OrderedDict()
        self._lock = threading.Lock()

    def _subtree(self, i: int) -> list[int]:
        return self._preorder[self._start[i] : self._stop[i]]

    def __len__(self) -> int:
        return len(self._ids)

    def search(self, text: str, *, limit: int = 20, include_deprecated: bool = False) -> list[SearchHit]:
        query = _fold(text).strip()
        if not query.split():
            return []
        key = (query, limit, include_deprecated)
        with self._lock:
            cached = self._results.get(key)
            if cached is not None:
                self._results.move_to_end(key)
                return list(cached)
        hits = self._search(query, limit, include_deprecated)
        with self._lock:
            self._results[key] = hits
            while len(self._results) > RESULT_CACHE_SIZE:
                self._results.popitem(last=False)
        return list(hits)

    def _candidates(self, query: str, words: Sequence[str], include_deprecated: bool) -> list[int]:
        """Every node that may match (a superset), in rank order: those under a name, or with
        a synonym, that holds the query's rarest gram; all nodes when no word has a gram."""
        best: str | None = None
        impossible = False
        for word in words:
            size = min(len(word), _MAX_GRAM)
            if size < _MIN_GRAM:
                continue  # one character: found almost everywhere, no use as a filter
            for gram in _grams(word, size):
                weight = self._weights.get(gram)
                if weight is None:
                    impossible = True  # no name or synonym has it: only an exact id can match
                elif best is None or weight < self._weights[best]:
                    best = gram
        if best is None and not impossible:
            return self._all_ranked if include_deprecated else self._active_ranked
        found: set[int] = {*self._irregular, *self._by_folded_id.get(query, ())}
        if not impossible and best is not None:
            for i in self._in_names.get(best, ()):
                found.update(self._subtree(i))
            found.update(self._in_synonyms.get(best, ()))
        if not include_deprecated:
            found.difference_update(self._deprecated_ids)
        return sorted(found, key=self._rank.__getitem__)

    def _synonym(self, i: int, words: Sequence[str]) -> str | None:
        """The first synonym of node ``i`` that holds every word."""
        for at, s in enumerate(self._folded_synonyms[i]):
            if all(w in s for w in words):
                return self._synonyms[i][at]
        return None

    def _search(self, query: str, limit: int, include_deprecated: bool) -> list[SearchHit]:
        """Exact id/name (5), name prefix (4), every word in the name (3), in a synonym (2),
        in the path (1); minus level/100 (shallower nodes first among equals: the likelier
        intent of a short query), then by path, then document order."""
        words = query.split()
        names, paths = self._folded_names, self._folded_paths
        candidates = self._candidates(query, words, include_deprecated)  # in rank order
        in_name = candidates
        for w in words:  # one pass a word (cheaper than all() over a generator per node)
            in_name = [i for i in in_name if w in names[i]]
        named = set(in_name)
        exact = {i for i in self._by_folded_name.get(query, ()) if i in named} | {
            i for i in self._by_folded_id.get(query, ()) if include_deprecated or not self._deprecated[i]
        }
        # Every list below keeps the rank order, so each score's best come first and the scan
        # stops at ``limit`` of them; those hold the best overall, whatever the levels are.
        tiers: list[tuple[float, Iterable[tuple[int, str]]]] = [
            (5.0, ((i, self._names[i]) for i in sorted(exact, key=self._rank.__getitem__))),
            (4.0, ((i, self._names[i]) for i in in_name if i not in exact and names[i].startswith(query))),
            (3.0, ((i, self._names[i]) for i in in_name if i not in exact and not names[i].startswith(query))),
        ]
        rest = [i for i in candidates if i not in named and i not in exact]
        if self._any_synonyms:
            synonyms = ((i, self._synonym(i, words)) for i in rest if self._folded_synonyms[i])
            tiers.append((2.0, ((i, s) for i, s in synonyms if s is not None)))
        tiers.append((1.0, (
            (i, self._paths[i]) for i in rest
            if all(w in paths[i] for w in words)
            and (not self._folded_synonyms[i] or self._synonym(i, words) is None)
        )))
        ranked: list[tuple[float, str, int, str]] = []
        for score, members in tiers:
            for i, matched in islice(members, limit):
                ranked.append((-(score - self._levels[i] / 100), self._paths[i], i, matched))
        return [
            SearchHit(id=self._ids[i], name=self._names[i], path=path, score=-neg, matched=matched)
            for neg, path, i, matched in heapq.nsmallest(limit, ranked)
        ]


_indexes: weakref.WeakKeyDictionary[Snapshot, SearchIndex] = weakref.WeakKeyDictionary()
_indexes_lock = threading.Lock()


def search_index(snapshot: Snapshot) -> SearchIndex:
    """The snapshot's index, built on first use and kept while the snapshot lives."""
    with _indexes_lock:
        index = _indexes.get(snapshot)
        if index is None:
            # built under the lock: concurrent first searches wait instead of each building it
            index = _indexes[snapshot] = SearchIndex(snapshot)
        return index


def search(snapshot: Snapshot, text: str, *, limit: int = 20, include_deprecated: bool = False) -> list[SearchHit]:
    """Nodes whose id, name or synonyms contain every word of ``text``, best first: exact
    id/name, then prefix, then all words in the name, then in a synonym, then in the path."""
    return search_index(snapshot).search(text, limit=limit, include_deprecated=include_deprecated)
