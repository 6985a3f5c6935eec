"""Attribute extraction for one product whose category is known: candidates per attribute
(text matches, shapes, neighbours' values), scored by the ranker, normalized, validated
against the taxonomy (closed values allowed and active; open values grounded in a span of
the input). An attribute without an accepted value is left out, never guessed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.attributes.candidates import AttributeCandidate, candidates_for, neighbour_votes
from agent.attributes.classifier import ValueClassifiers, classifier_text
from agent.attributes.knowledge import AttributeKnowledge, Gold, category_of, example_text
from agent.attributes.llm_step import AttributeQuestion, LLMAttributeAnswer, ask_attributes
from agent.attributes.neighbours import LexicalNeighbours
from agent.attributes.normalize import ValueNormalizer
from agent.attributes.ranker import CandidateRanker, Group
from agent.attributes.text import Field, Match, ProductText
from agent.contract import AttributeEvidence, AttributeSelection, AttributeTag, AttributeValueTag
from agent.llm.base import LLMBackend
from retrieval.examples import Example
from taxonomy import Snapshot
from taxonomy.folding import fold
from taxonomy.grounding import AttributeClaim, validate_attribute_claims
from taxonomy.model import Attribute

VOTERS = 10  # labelled neighbours whose values vote


@dataclass(frozen=True)
class ExtractorConfig:
    max_values: int = 5
    """At most this many values for a multi-valued attribute."""
    neighbours: int = 10
    """Nearest examples whose values vote."""
    min_confidence: float | None = None
    """Accept a value from this score; None: the threshold fitted on the examples."""
    llm_weight: float = 0.5
    """How far an LLM answer moves a candidate's score: agreeing with a candidate lifts it to
    ``1 - (1 - score)(1 - w)``; a value only the LLM names starts at ``w``."""
    llm_max_options: int = 40
    llm_description_chars: int = 500


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
        classifiers: ValueClassifiers | None = None,
        neighbours: LexicalNeighbours | None = None,
    ) -> None:
        self.knowledge = knowledge
        self.classifiers = classifiers or ValueClassifiers()
        self.neighbours = neighbours or LexicalNeighbours([])
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
        classifiers = _fit_classifiers(snapshot, examples, knowledge, seed)
        near = LexicalNeighbours(labelled_examples(snapshot, examples))
        groups = _training_groups(snapshot, examples, knowledge, normalizer, classifiers, near)
        ranker = CandidateRanker.fit(groups, seed=seed)
        return cls(knowledge, normalizer, ranker, config, classifiers, near)

    def extract(
        self,
        snapshot: Snapshot,
        text: ProductText,
        category: str,
        neighbours: Sequence[tuple[Example, float]] = (),
        selection: AttributeSelection = "on",
        llm: LLMBackend | None = None,
    ) -> list[AttributeTag]:
        return self.extract_with_llm(snapshot, text, category, neighbours, selection, llm)[0]

    def extract_with_llm(
        self,
        snapshot: Snapshot,
        text: ProductText,
        category: str,
        neighbours: Sequence[tuple[Example, float]] = (),
        selection: AttributeSelection = "on",
        llm: LLMBackend | None = None,
    ) -> tuple[list[AttributeTag], LLMAttributeAnswer | None]:
        """The attribute tags, and the LLM's answer when one was asked (one call for all the
        attributes; its values only ever adjust candidates that are then validated)."""
        attrs = selected_attributes(snapshot, category, selection)
        if not attrs:
            return [], None
        title, description = text.field("title"), text.field("description")
        if self.neighbours.examples:
            # the neighbourhood the ranker was trained on (see agent.attributes.neighbours)
            neighbours = self.neighbours.of_text(
                title.text if title else "", description.text if description else "", VOTERS
            )
        votes_from = [
            (dict(ex.attribute_values), score)
            for ex, score in neighbours[: self.config.neighbours]
            if ex.attribute_values
        ]
        vector = self.classifiers.vector(classifier_text(
            title.text if title else "", description.text if description else ""))
        ranked = {
            attr.id: self.candidates(attr, text, votes_from, vector=vector, score=False) for attr in attrs
        }
        self.ranker.score([c for found in ranked.values() for c in found])  # one batch a product
        for found in ranked.values():
            found.sort(key=_rank)
        answer = None
        if llm is not None:
            answer = self._ask(llm, snapshot, category, text, attrs, ranked)
        out: list[AttributeTag] = []
        for attr in attrs:
            chosen = self._accept(attr, ranked[attr.id])
            accepted = validated(snapshot, category, attr, text, chosen)
            if accepted:
                out.append(AttributeTag(attribute=attr.id, name=attr.name, values=accepted))
        return out, answer

    def _ask(
        self, llm: LLMBackend, snapshot: Snapshot, category: str, text: ProductText,
        attrs: Sequence[Attribute], ranked: dict[str, list[AttributeCandidate]],
    ) -> LLMAttributeAnswer:
        title = text.field("title")
        description = text.field("description")
        head = title.text if title is not None else ""
        body = description.text[: self.config.llm_description_chars] if description is not None else ""
        shown = f"{head}\n{body}" if body else head
        questions = []
        for attr in attrs:
            found = ranked[attr.id]
            if attr.closed:
                first = [attr.value(c.key) for c in found]
                order = [v for v in first if v is not None and v.active]
                rest = [v for v in attr.active_values() if v not in order]
                options = tuple(dict.fromkeys([*order, *rest]))[: self.config.llm_max_options]
                hint = tuple(v.name for v in order[:2])
                questions.append(AttributeQuestion(attr, options, hint))
            else:
                hint = tuple(c.match.text for c in found[:2] if c.match is not None)
                questions.append(AttributeQuestion(attr, (), hint))
        answer = ask_attributes(
            llm, product_text=shown, category_path=snapshot.path_text(category), questions=questions,
            max_options=self.config.llm_max_options,
        )
        w = self.config.llm_weight
        for attr in attrs:
            found = ranked[attr.id]
            for i, value in enumerate(answer.values.get(attr.id, [])):
                if attr.closed:
                    key: str | None = value
                    match = next((c.match for c in found if c.key == value and c.match), None)
                else:
                    spans = answer.spans.get(attr.id, [])
                    if i >= len(spans):
                        continue
                    match = _field_match(text, spans[i], len(head))
                    key = self.normalizer.normalize(attr, match.text) if match is not None else None
                if not key:
                    continue
                same = [c for c in found if fold(c.key) == fold(key)]
                for c in same:
                    c.score = 1.0 - (1.0 - c.score) * (1.0 - w)
                if not same and (attr.closed or match is not None):
                    found.append(AttributeCandidate(attr, key, match, {"llm": 1.0}, score=w, source="llm"))
            found.sort(key=lambda c: -c.score)
        return answer

    def candidates(
        self, attr: Attribute, text: ProductText,
        votes_from: Sequence[tuple[dict[str, tuple[str, ...]], float]], own: Gold | None = None,
        *, vector: Any = None, score: bool = True,
    ) -> list[AttributeCandidate]:
        votes = neighbour_votes(attr, self.knowledge, votes_from)
        classes: dict[str, float] = {}
        if self.classifiers.has(attr.id):
            if vector is None:
                title, description = text.field("title"), text.field("description")
                vector = self.classifiers.vector(classifier_text(
                    title.text if title else "", description.text if description else ""))
            classes = self.classifiers.predict(attr.id, vector)
        found = candidates_for(attr, text, self.knowledge, self.normalizer, votes, own, classes)
        if score:
            self.ranker.score(found)
            found.sort(key=_rank)
        return found

    def choose(
        self, attr: Attribute, text: ProductText,
        votes_from: Sequence[tuple[dict[str, tuple[str, ...]], float]],
    ) -> list[AttributeCandidate]:
        return self._accept(attr, self.candidates(attr, text, votes_from))

    def _accept(self, attr: Attribute, ranked: Sequence[AttributeCandidate]) -> list[AttributeCandidate]:
        limit = self.config.max_values if attr.cardinality == "multi" else 1
        chosen: list[AttributeCandidate] = []
        for c in ranked:
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
        source = c.source if c.source == "llm" else "text" if c.match is not None else "neighbors"
        out.append(AttributeValueTag(
            value_id=claim.value_id, value=name, confidence=round(min(max(c.score, 0.0), 1.0), 6),
            evidence=AttributeEvidence(
                source=source, span=claim.span, field=claim.field, text=claim.written,
            ),
        ))
    return out


def _rank(c: AttributeCandidate) -> tuple[float, tuple[int, int]]:
    return -c.score, c.match.span if c.match else (1 << 30, 0)


def _field_match(text: ProductText, span: tuple[int, int], title_length: int) -> Match | None:
    """A span of the text shown to the LLM (title, newline, description head) as a match in
    the field it falls in; None when it straddles the two."""
    start, end = span
    name, offset = ("title", 0) if end <= title_length else ("description", title_length + 1)
    if start < offset:
        return None
    f = text.field(name)
    if f is None:
        return None
    a, b = start - offset, end - offset
    if not 0 <= a < b <= len(f.text):
        return None
    return Match(f.name, (a, b), f.text[a:b], _token_at(f, a), max(1, len(f.text[a:b].split())))


def _token_at(f: Field, offset: int) -> int:
    return next((i for i, t in enumerate(f.tokens) if t.end > offset), len(f.tokens))


def _fit_classifiers(
    snapshot: Snapshot, examples: Sequence[Example], k: AttributeKnowledge, seed: int
) -> ValueClassifiers:
    texts: dict[str, str] = {}
    labels: dict[str, dict[str, str]] = {}
    for ex in examples:
        if not ex.attribute_values:
            continue
        for attr_id, gold in k.golds.get(ex.id, {}).items():
            attr = snapshot.attributes.get(attr_id)
            if attr is None or not attr.closed or not gold.values:
                continue
            labels.setdefault(attr_id, {})[ex.id] = gold.values[0]
            texts[ex.id] = classifier_text(ex.title, ex.description)
    return ValueClassifiers.fit(texts, labels, seed=seed)


def labelled_examples(snapshot: Snapshot, examples: Sequence[Example]) -> list[Example]:
    return [ex for ex in examples if ex.attribute_values and category_of(snapshot, ex.tags)]


def _training_groups(
    snapshot: Snapshot, examples: Sequence[Example], k: AttributeKnowledge, normalizer: ValueNormalizer,
    classifiers: ValueClassifiers, neighbours: LexicalNeighbours,
) -> list[Group]:
    """Every (example, attribute) of the examples that carry attribute values, with its
    candidates labelled against the example's own values (leave-one-out statistics)."""
    groups: list[Group] = []
    labelled = [ex for ex in examples if ex.attribute_values and category_of(snapshot, ex.tags)]
    near = neighbours.of_examples(VOTERS)
    for ex in labelled:
        cat = category_of(snapshot, ex.tags)
        assert cat is not None
        text = example_text(ex)
        golds = k.golds.get(ex.id, {})
        votes_from = [(dict(n.attribute_values), w) for n, w in near.get(ex.id, [])]
        for attr in snapshot.attributes_for(cat):
            gold = golds.get(attr.id)
            if gold is None:
                continue
            votes = neighbour_votes(attr, k, votes_from)
            classes = classifiers.held_out(attr.id, ex.id)
            found = candidates_for(attr, text, k, normalizer, votes, gold, classes)
            if not found:
                if gold.values:
                    groups.append(Group([], [], True))
                continue
            want = {fold(v) for v in gold.values}
            labels = [fold(c.key) in want for c in found]
            groups.append(Group(found, labels, bool(gold.values)))
    return groups
