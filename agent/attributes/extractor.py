"""Attribute extraction for one product whose category is known: candidates per attribute
(text matches, shapes, neighbours' values), scored by the ranker, normalized, validated
against the taxonomy (closed values allowed and active; open values grounded in a span of
the input). An attribute without an accepted value is left out, never guessed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.attributes.candidates import AttributeCandidate, candidates_for, neighbour_votes
from agent.attributes.knowledge import AttributeKnowledge, Gold, category_of, example_text
from agent.attributes.normalize import ValueNormalizer
from agent.attributes.ranker import CandidateRanker, Group
from agent.attributes.text import ProductText, fold
from agent.contract import AttributeEvidence, AttributeSelection, AttributeTag, AttributeValueTag
from retrieval.examples import Example
from taxonomy import Snapshot
from taxonomy.grounding import AttributeClaim, validate_attribute_claims
from taxonomy.model import Attribute


@dataclass(frozen=True)
class ExtractorConfig:
    max_values: int = 5
    """At most this many values for a multi-valued attribute."""
    neighbours: int = 10
    """Nearest examples whose values vote."""
    min_confidence: float | None = None
    """Accept a value from this score; None: the threshold fitted on the examples."""


def selected_attributes(
    snapshot: Snapshot, category: str, selection: AttributeSelection
) -> tuple[Attribute, ...]:
    """The category's active attributes (inherited included) the caller asked for: all for
    ``"on"``, none for ``"off"``, else those whose id or name (case-insensitive) is listed."""
    if selection == "off":
        return ()
    attrs = tuple(a for a in snapshot.attributes_for(category) if a.active)
    if selection == "on":
        return attrs
    wanted = {fold(s) for s in selection}
    return tuple(a for a in attrs if a.id in selection or fold(a.name) in wanted)


def product_text(title: str, description: str = "", category_text: str = "",
                 attributes: dict[str, str] | None = None) -> ProductText:
    return ProductText.of(title, description, category_text=category_text, attributes=attributes)


class AttributeExtractor:
    def __init__(
        self,
        knowledge: AttributeKnowledge,
        normalizer: ValueNormalizer,
        ranker: CandidateRanker,
        config: ExtractorConfig | None = None,
    ) -> None:
        self.knowledge = knowledge
        self.normalizer = normalizer
        self.ranker = ranker
        self.config = config or ExtractorConfig()

    @property
    def threshold(self) -> float:
        c = self.config.min_confidence
        return c if c is not None else self.ranker.threshold

    @classmethod
    def fit(
        cls, snapshot: Snapshot, examples: Sequence[Example], config: ExtractorConfig | None = None,
        *, seed: int = 0,
    ) -> AttributeExtractor:
        knowledge = AttributeKnowledge.fit(snapshot, examples)
        normalizer = ValueNormalizer().learn(knowledge.pairs)
        groups = _training_groups(snapshot, examples, knowledge, normalizer)
        return cls(knowledge, normalizer, CandidateRanker.fit(groups, seed=seed), config)

    def extract(
        self,
        snapshot: Snapshot,
        text: ProductText,
        category: str,
        neighbours: Sequence[tuple[Example, float]] = (),
        selection: AttributeSelection = "on",
    ) -> list[AttributeTag]:
        attrs = selected_attributes(snapshot, category, selection)
        if not attrs:
            return []
        votes_from = [
            (dict(ex.attribute_values), score)
            for ex, score in neighbours[: self.config.neighbours]
            if ex.attribute_values
        ]
        out: list[AttributeTag] = []
        for attr in attrs:
            chosen = self.choose(attr, text, votes_from)
            accepted = validated(snapshot, category, attr, text, chosen)
            if accepted:
                out.append(AttributeTag(attribute=attr.id, name=attr.name, values=accepted))
        return out

    def candidates(
        self, attr: Attribute, text: ProductText,
        votes_from: Sequence[tuple[dict[str, tuple[str, ...]], float]], own: Gold | None = None,
    ) -> list[AttributeCandidate]:
        votes = neighbour_votes(attr, self.knowledge, votes_from)
        found = candidates_for(attr, text, self.knowledge, self.normalizer, votes, own)
        self.ranker.score(found)
        return sorted(found, key=lambda c: (-c.score, c.match.span if c.match else (1 << 30, 0)))

    def choose(
        self, attr: Attribute, text: ProductText,
        votes_from: Sequence[tuple[dict[str, tuple[str, ...]], float]],
    ) -> list[AttributeCandidate]:
        limit = self.config.max_values if attr.cardinality == "multi" else 1
        chosen: list[AttributeCandidate] = []
        for c in self.candidates(attr, text, votes_from):
            if c.score < self.threshold or len(chosen) >= limit:
                break
            if all(fold(c.key) != fold(o.key) for o in chosen):
                chosen.append(c)
        return chosen


def validated(
    snapshot: Snapshot, category: str, attr: Attribute, text: ProductText,
    chosen: Sequence[AttributeCandidate],
) -> list[AttributeValueTag]:
    """The chosen values the taxonomy validator accepts, as result values."""
    fields = {f.name: f.text for f in text.fields}
    out: list[AttributeValueTag] = []
    for c in chosen:
        closed = attr.closed
        value = attr.value(c.key) if closed else None
        name = value.name if value is not None else c.key
        claim = AttributeClaim(
            attribute=attr.id, value_id=c.key if closed else None, value=name,
            field=c.match.field if c.match else None, span=c.match.span if c.match else None,
            written=c.match.text if c.match else None,
        )
        if not validate_attribute_claims(snapshot, category, [claim], fields).ok:
            continue
        source = "text" if c.match is not None else "neighbors"
        out.append(AttributeValueTag(
            value_id=claim.value_id, value=name, confidence=round(min(max(c.score, 0.0), 1.0), 6),
            evidence=AttributeEvidence(
                source=source, span=claim.span, field=claim.field, text=claim.written,
            ),
        ))
    return out


def _training_groups(
    snapshot: Snapshot, examples: Sequence[Example], k: AttributeKnowledge, normalizer: ValueNormalizer,
) -> list[Group]:
    """Every (example, attribute) of the examples that carry attribute values, with its
    candidates labelled against the example's own values (leave-one-out statistics)."""
    groups: list[Group] = []
    labelled = [ex for ex in examples if ex.attribute_values and category_of(snapshot, ex.tags)]
    near = _lexical_neighbours(labelled)
    for ex in labelled:
        cat = category_of(snapshot, ex.tags)
        assert cat is not None
        text = example_text(ex)
        golds = k.golds.get(ex.id, {})
        votes_from = [(dict(labelled[j].attribute_values), w) for j, w in near.get(ex.id, [])]
        for attr in snapshot.attributes_for(cat):
            gold = golds.get(attr.id)
            if gold is None:
                continue
            votes = neighbour_votes(attr, k, votes_from)
            found = candidates_for(attr, text, k, normalizer, votes, gold)
            if not found:
                if gold.values:
                    groups.append(Group([], [], True))
                continue
            want = {fold(v) for v in gold.values}
            labels = [fold(c.key) in want for c in found]
            groups.append(Group(found, labels, bool(gold.values)))
    return groups


def _lexical_neighbours(examples: Sequence[Example], k: int = 10) -> dict[str, list[tuple[int, float]]]:
    """Each example's nearest other examples by TF-IDF cosine: stand-ins for the retrieval
    neighbours a new product gets, so the ranker learns how far to trust their vote (the
    embedder is not loaded to fit; the vote is a share, so its scale carries over)."""
    if len(examples) < 2:
        return {}
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [f"{ex.title} {ex.description[:500]}" for ex in examples]
    matrix = TfidfVectorizer(sublinear_tf=True, min_df=1).fit_transform(texts)
    out: dict[str, list[tuple[int, float]]] = {}
    for start in range(0, len(examples), 512):
        block = (matrix[start : start + 512] @ matrix.T).toarray()
        for row, sims in enumerate(block):
            i = start + row
            sims[i] = -1.0
            top = np.argsort(-sims)[:k]
            out[examples[i].id] = [(int(j), float(sims[j])) for j in top if sims[j] > 0]
    return out
