"""What the examples teach about each attribute: how its values are written, how often a
writing seen in a product's text really is that attribute's value, what its values look
like (shapes) and what words precede them. Fitted once per example pool (index generation).

All statistics are counts over the examples whose category has the attribute, so an
attribute's knowledge comes from the products that could carry it. ``loo`` (leave one out)
subtracts one example's own contribution: the ranker is trained on the pool with the
statistics it would have seen without that example, as it will be used on new products.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from agent.attributes.text import ProductText, coarse_shape_of, shape_of, tokens_of
from retrieval.examples import Example
from taxonomy import Snapshot
from taxonomy.model import Attribute

Surface = tuple[str, ...]
#: identifiers and numbers are also found by their shape, not only as seen before
PATTERN_TYPES = frozenset({"identifier", "number", "number_with_unit"})
MAX_SURFACE_TOKENS = 6


def example_text(example: Example) -> ProductText:
    return ProductText.of(
        example.title, example.description, category_text=example.category_text,
        attributes=example.attributes,
    )


def category_of(snapshot: Snapshot, tags: Iterable[str]) -> str | None:
    for tag in tags:
        resolved = snapshot.resolve(tag)
        if resolved is not None:
            return resolved
    return None


@dataclass
class Gold:
    """One example's values for one attribute: value keys and the surfaces that spell them."""

    values: tuple[str, ...]
    surfaces: frozenset[Surface]


@dataclass
class AttributeKnowledge:
    snapshot: Snapshot
    #: attribute id -> surface -> Counter(value key): value id (closed) or normalized value
    surfaces: dict[str, dict[Surface, Counter[str]]] = field(default_factory=lambda: defaultdict(dict))
    #: (attribute id, surface) -> [examples whose text has it, those where it is the value]
    occurrences: dict[tuple[str, Surface], list[int]] = field(default_factory=dict)
    #: attribute id -> [examples with the attribute, examples with a value for it]
    fill: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    #: attribute id -> shape -> count of gold mentions with that shape
    shapes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    #: attribute id -> coarse shape -> count of gold mentions with that shape
    coarse_shapes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    #: attribute id -> previous token -> count at gold mentions
    contexts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    context_totals: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: per example id: its gold per attribute (for leave-one-out statistics)
    golds: dict[str, dict[str, Gold]] = field(default_factory=dict)
    pairs: list[tuple[str, str, str]] = field(default_factory=list)
    """(attribute id, as written, normalized) seen in the examples: the normalizer's input."""

    # -- building ------------------------------------------------------------------------
    @classmethod
    def fit(cls, snapshot: Snapshot, examples: Sequence[Example]) -> AttributeKnowledge:
        k = cls(snapshot)
        k._taxonomy_surfaces()
        texts: list[tuple[Example, ProductText, tuple[Attribute, ...]]] = []
        for ex in examples:
            cat = category_of(snapshot, ex.tags)
            if cat is None:
                continue
            attrs = snapshot.attributes_for(cat)
            if not attrs:
                continue
            text = example_text(ex)
            texts.append((ex, text, attrs))
            k._learn_gold(ex, text, attrs)
        k._count_occurrences(texts)
        return k

    def _taxonomy_surfaces(self) -> None:
        for attr in self.snapshot.document.attributes:
            if not attr.closed:
                continue
            for value in attr.active_values():
                for spelling in (value.name, *value.synonyms):
                    toks = tokens_of(spelling)
                    if toks and len(toks) <= MAX_SURFACE_TOKENS:
                        self.surfaces[attr.id].setdefault(toks, Counter())[value.id] += 0

    def _learn_gold(self, ex: Example, text: ProductText, attrs: Sequence[Attribute]) -> None:
        golds: dict[str, Gold] = {}
        for attr in attrs:
            fill = self.fill[attr.id]
            fill[0] += 1
            keys = (self.value_key(attr, v) for v in ex.attribute_values.get(attr.id, ()))
            values = tuple(v for v in keys if v)
            if not values:
                golds[attr.id] = Gold((), frozenset())
                continue
            fill[1] += 1
            mentions = list(ex.attribute_mentions.get(attr.id, ()))
            spellings = [*mentions, *(s for v in values for s in self.spellings(attr, v))]
            surfaces: set[Surface] = set()
            for spelling in spellings:
                toks = tokens_of(spelling)
                if not toks or len(toks) > MAX_SURFACE_TOKENS:
                    continue
                surfaces.add(toks)
                self.surfaces[attr.id].setdefault(toks, Counter())[values[0]] += 1
            for mention in mentions:
                self.pairs.append((attr.id, mention, values[0]))
                match = text.locate(mention)
                if match is None:
                    continue
                shape = shape_of(match.text)
                self.shapes[attr.id][shape] += 1
                self.coarse_shapes[attr.id][coarse_shape_of(shape)] += 1
                self.contexts[attr.id][previous_token(text, match.field, match.position)] += 1
            golds[attr.id] = Gold(values, frozenset(surfaces))
        self.golds[ex.id] = golds

    def _count_occurrences(self, texts: list[tuple[Example, ProductText, tuple[Attribute, ...]]]) -> None:
        by_surface: dict[Surface, list[str]] = defaultdict(list)
        for attr_id, table in self.surfaces.items():
            for surface in table:
                by_surface[surface].append(attr_id)
        for ex, text, attrs in texts:
            have = {a.id for a in attrs}
            golds = self.golds.get(ex.id, {})
            for gram in text.grams:
                for attr_id in by_surface.get(gram, ()):
                    if attr_id not in have:
                        continue
                    counts = self.occurrences.setdefault((attr_id, gram), [0, 0])
                    counts[0] += 1
                    gold = golds.get(attr_id)
                    if gold is not None and gram in gold.surfaces:
                        counts[1] += 1
            # how often each context word occurs at all, for the context's precision
            words: Counter[str] = Counter(t.text for f in text.fields for t in f.tokens)
            words["^"] = len(text.fields)
            for attr in attrs:
                seen = self.contexts.get(attr.id)
                if seen:
                    totals = self.context_totals
                    for word in seen:
                        if words[word]:
                            totals[f"{attr.id}\x00{word}"] += words[word]

    # -- reading -------------------------------------------------------------------------
    def value_key(self, attr: Attribute, value: str) -> str | None:
        """A closed attribute's value id for an id or a name (None when not allowed); an open
        attribute's value as given."""
        if not attr.closed:
            return value.strip() or None
        if attr.value(value) is not None:
            return value
        folded = tokens_of(value)
        for v in attr.values:
            if tokens_of(v.name) == folded:
                return v.id
        return None

    def spellings(self, attr: Attribute, key: str) -> list[str]:
        if attr.closed:
            v = attr.value(key)
            return [v.name, *v.synonyms] if v is not None else []
        return [key]

    def precision(self, attr_id: str, surface: Surface, own: Gold | None = None, *,
                  in_text: bool = True) -> tuple[float, int]:
        """Smoothed share of the examples whose text holds ``surface`` where it is this
        attribute's value, and how many such examples; ``own`` removes one example's part."""
        occ, hit = self.occurrences.get((attr_id, surface), [0, 0])
        if own is not None and in_text:
            occ -= 1
            hit -= 1 if surface in own.surfaces else 0
        occ, hit = max(occ, 0), max(hit, 0)
        return (hit + 0.5) / (occ + 1.0), occ

    def fill_rate(self, attr_id: str, own: Gold | None = None) -> float:
        n, filled = self.fill.get(attr_id, [0, 0])
        if own is not None:
            n -= 1
            filled -= 1 if own.values else 0
        return (filled + 0.5) / (n + 1.0)

    def context_precision(self, attr_id: str, prev: str, own_hit: int = 0) -> float:
        hits = self.contexts.get(attr_id, Counter()).get(prev, 0) - own_hit
        total = self.context_totals.get(f"{attr_id}\x00{prev}", 0) - own_hit
        return (max(hits, 0) + 0.1) / (max(total, 0) + 1.0)

    def shape_share(self, attr_id: str, shape: str, own: int = 0, *, coarse: bool = False) -> float:
        counts = (self.coarse_shapes if coarse else self.shapes).get(attr_id)
        if not counts:
            return 0.0
        total = sum(counts.values()) - own
        return max(counts.get(shape, 0) - own, 0) / max(total, 1)


def previous_token(text: ProductText, field_name: str, position: int) -> str:
    f = text.field(field_name)
    if f is None or position == 0:
        return "^"
    return f.tokens[position - 1].text


def gold_of(k: AttributeKnowledge, example_id: str) -> Mapping[str, Gold]:
    return k.golds.get(example_id, {})
