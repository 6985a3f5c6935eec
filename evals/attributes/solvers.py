"""What an attribute eval runs: the tagger, or one of two reference baselines, behind one
interface (:class:`AttrSolver`), so each is its own run through the same runner.

* ``tagger`` (pipelines ``hybrid``, ``knn``, ``rag`` …): ``Tagger.tag_many(products,
  attributes=[asked attribute ids], categories=[given category or None])``: the category is
  chosen only when the record gives none; the extractor is fitted on the index's examples.
* ``dict-baseline``: a dictionary of the example pool's values (as written and normalized)
  per (category, attribute); the longest one found in the product's text (word bounded,
  case-insensitive, any whitespace) wins, and the value predicted is the normalized value
  that spelling most often stood for. No ranking, no threshold: WDC-PAVE's "plain
  dictionary" reference (F1 ~61 on dev).
* ``neighbour-vote``: the nearest examples of the same category (the retrieval the tagger
  uses: the configured embedder's index) vote with their similarity for their value of the
  attribute, or for "no value" when they have none; the heaviest wins.

Neither baseline goes through the taxonomy's grounding validator (the neighbour vote's open
values are, by construction, not read from the text): they are references for the metric,
not tagger output. Both only ever name attributes of the category and allowed values of
closed attributes, which the runner checks for every solver (``off_schema``).
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.attributes import selected_attributes
from agent.contract import (
    AttributeEvidence,
    AttributeSelection,
    AttributeTag,
    AttributeValueTag,
    Product,
)
from agent.tagger import Tagger
from retrieval import CandidateGenerator, Example
from taxonomy import Snapshot
from taxonomy.model import Attribute

DICT_BASELINE = "dict-baseline"
NEIGHBOUR_VOTE = "neighbour-vote"
BASELINES = (DICT_BASELINE, NEIGHBOUR_VOTE)
#: dictionary spellings shorter than this are not matched ("a", "x", "3" match everywhere)
MIN_SURFACE_CHARS = 2
VOTE_NEIGHBOURS = 10
_NONE = "\x00none"


@dataclass(frozen=True)
class AttrRequest:
    product: Product
    category: str | None  # known category, or None: the solver chooses it
    selection: AttributeSelection  # "on" or attribute ids


@dataclass
class AttrAnswer:
    category: str | None
    attributes: list[AttributeTag]
    category_confidence: float | None = None
    needs_review: bool = False
    latency_ms: float = 0.0
    result: dict[str, Any] | None = field(default=None)  # the tagger's output contract


class AttrSolver(Protocol):
    def solve(self, requests: Sequence[AttrRequest]) -> list[AttrAnswer]: ...


def _key(selection: AttributeSelection) -> tuple[str, ...]:
    return ("\x00" + selection,) if isinstance(selection, str) else tuple(selection)


class TaggerSolver:
    """The real tagger; requests are grouped by their attribute selection (``tag_many``
    takes one per call) and answered in input order."""

    def __init__(self, tagger: Tagger) -> None:
        self.tagger = tagger

    def solve(self, requests: Sequence[AttrRequest]) -> list[AttrAnswer]:
        groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for i, req in enumerate(requests):
            groups[_key(req.selection)].append(i)
        answers: list[AttrAnswer | None] = [None] * len(requests)
        for idx in groups.values():
            first = requests[idx[0]]
            results = self.tagger.tag_many(
                [requests[i].product for i in idx], attributes=first.selection,
                categories=[requests[i].category for i in idx],
            )
            for i, r in zip(idx, results, strict=True):
                answers[i] = AttrAnswer(
                    category=r.tags[0].id if r.tags else None,
                    category_confidence=r.tags[0].confidence if r.tags else None,
                    attributes=list(r.attributes), needs_review=r.needs_review,
                    latency_ms=r.timings_ms.total,
                    result=r.model_dump(mode="json", exclude={"timings_ms"}),
                )
        return [a for a in answers if a is not None]


def _fold(text: str) -> str:
    return " ".join(text.lower().split())


def _closed_value(attr: Attribute, value: str) -> tuple[str | None, str] | None:
    """(value id, name) of ``value`` for ``attr``: a closed attribute's allowed value (by id
    or folded name), None when it is not one; an open attribute takes any value."""
    if not attr.closed:
        return None, value
    for v in attr.active_values():
        if v.id == value or _fold(v.name) == _fold(value):
            return v.id, v.name
    return None


def _category_of(snapshot: Snapshot, ex: Example) -> str | None:
    for tag in ex.tags:
        resolved = snapshot.resolve(tag)
        if resolved is not None:
            return resolved
    return None


class DictionaryBaseline:
    """See the module docstring. Fitted on the examples' attribute values and mentions."""

    def __init__(self, snapshot: Snapshot, examples: Sequence[Example]) -> None:
        self.snapshot = snapshot
        # attribute id -> folded spelling -> Counter(normalized value)
        self.surfaces: dict[str, dict[str, Counter[str]]] = defaultdict(dict)
        for ex in examples:
            if _category_of(snapshot, ex) is None:
                continue
            for attr_id, values in ex.attribute_values.items():
                if not values:
                    continue
                table = self.surfaces[attr_id]
                for mention in ex.attribute_mentions.get(attr_id, ()):
                    table.setdefault(_fold(mention), Counter())[values[0]] += 1
                for value in values:
                    table.setdefault(_fold(value), Counter())[value] += 1
        self._patterns: dict[str, list[tuple[str, re.Pattern[str]]]] = {
            attr_id: sorted(
                ((s, re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, s.split())) + r"(?!\w)", re.I))
                 for s in table if len(s) >= MIN_SURFACE_CHARS),
                key=lambda sp: (-len(sp[0]), sp[0]),
            )
            for attr_id, table in self.surfaces.items()
        }

    def _attributes(self, category: str | None, selection: AttributeSelection) -> tuple[Attribute, ...]:
        if category is not None:
            return selected_attributes(self.snapshot, category, selection)
        # no category: every attribute the dictionary knows
        known = [self.snapshot.attributes[a] for a in sorted(self.surfaces) if a in self.snapshot.attributes]
        if selection == "off":
            return ()
        if selection == "on":
            return tuple(a for a in known if a.active)
        return tuple(a for a in known if a.active and (a.id in selection or a.name in selection))

    def solve(self, requests: Sequence[AttrRequest]) -> list[AttrAnswer]:
        return [self._one(r) for r in requests]

    def _one(self, req: AttrRequest) -> AttrAnswer:
        t0 = time.perf_counter()
        fields = (("title", req.product.title), ("description", req.product.description))
        out: list[AttributeTag] = []
        for attr in self._attributes(req.category, req.selection):
            best: tuple[int, int, int, str, str, tuple[int, int], str] | None = None
            for surface, pattern in self._patterns.get(attr.id, ()):
                if best is not None and len(surface) < best[0]:
                    break  # sorted longest first: a shorter spelling cannot win
                for rank, (name, text) in enumerate(fields):
                    m = pattern.search(text)
                    if m is not None:
                        cand = (len(surface), -rank, -m.start(), surface, name, m.span(), m.group(0))
                        if best is None or cand[:3] > best[:3]:
                            best = cand
                        break
            if best is None:
                continue
            counts = self.surfaces[attr.id][best[3]]
            value, count = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
            resolved = _closed_value(attr, value)
            if resolved is None:
                continue
            value_id, name = resolved
            out.append(AttributeTag(attribute=attr.id, name=attr.name, values=[AttributeValueTag(
                value_id=value_id, value=name, confidence=round(count / sum(counts.values()), 6),
                evidence=AttributeEvidence(source="text", span=best[5], field=best[4], text=best[6]),
            )]))
        ms = (time.perf_counter() - t0) * 1000.0
        return AttrAnswer(category=req.category, attributes=out, latency_ms=round(ms, 3))


class NeighbourVoteBaseline:
    """See the module docstring. ``k`` nearest examples of the product's category vote."""

    def __init__(self, generator: CandidateGenerator, k: int = VOTE_NEIGHBOURS) -> None:
        self.generator = generator
        self.k = k

    def solve(self, requests: Sequence[AttrRequest]) -> list[AttrAnswer]:
        t0 = time.perf_counter()
        retrievals = self.generator.retrieve([r.product for r in requests])
        per_item = (time.perf_counter() - t0) * 1000.0 / max(1, len(requests))
        snap = self.generator.snapshot
        answers = []
        for req, ret in zip(requests, retrievals, strict=True):
            t1 = time.perf_counter()
            category, confidence = req.category, None
            if category is None and ret.candidates:
                category, confidence = ret.candidates[0].id, ret.candidates[0].probability
            out: list[AttributeTag] = []
            if category is not None:
                mates = [n for n in ret.neighbours if category in n.tags][: self.k]
                for attr in selected_attributes(snap, category, req.selection):
                    tag = self._vote(attr, [(n.example, n.score) for n in mates])
                    if tag is not None:
                        out.append(tag)
            ms = per_item + (time.perf_counter() - t1) * 1000.0
            answers.append(AttrAnswer(category=category, category_confidence=confidence, attributes=out,
                                      latency_ms=round(ms, 3)))
        return answers

    @staticmethod
    def _vote(attr: Attribute, mates: Sequence[tuple[Example, float]]) -> AttributeTag | None:
        weight: dict[str, float] = defaultdict(float)
        spelling: dict[str, Counter[str]] = defaultdict(Counter)
        for ex, score in mates:
            values = ex.attribute_values.get(attr.id, ())
            key = _fold(values[0]) if values else _NONE
            weight[key] += max(score, 0.0)
            if values:
                spelling[key][values[0]] += 1
        total = sum(weight.values())
        if not weight or total <= 0:
            return None
        key, won = sorted(weight.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        if key == _NONE:
            return None
        value = sorted(spelling[key].items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        resolved = _closed_value(attr, value)
        if resolved is None:
            return None
        value_id, name = resolved
        return AttributeTag(attribute=attr.id, name=attr.name, values=[AttributeValueTag(
            value_id=value_id, value=name, confidence=round(won / total, 6),
            evidence=AttributeEvidence(source="neighbors"),
        )])
