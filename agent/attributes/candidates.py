"""Candidate values for one attribute of one product, each with the features the ranker
scores: writings seen before (the examples' values, the taxonomy's value names and
synonyms) found in the text; spans shaped like the attribute's values (identifiers,
numbers); and the neighbours' values, which need not be in the text at all."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from agent.attributes.knowledge import PATTERN_TYPES, AttributeKnowledge, Gold, previous_token
from agent.attributes.normalize import ValueNormalizer
from agent.attributes.text import Match, ProductText, coarse_shape_of
from taxonomy.model import Attribute

FEATURES = (
    "from_lexicon", "lex_precision", "lex_seen", "from_shape", "shape_share", "context",
    "in_title", "position", "tokens", "chars", "has_digit", "has_alpha", "neighbour_vote",
    "neighbour_only", "fill_rate", "closed", "taxonomy_name", "occurrences", "coarse_share",
    "whole", "classifier",
)
MAX_PATTERN_TOKENS = 5
MAX_PATTERN_CHARS = 1500  # shape candidates come from the head of each field
MAX_CANDIDATES = 12
MAX_SHAPE_SPANS = 40  # spans shaped like the attribute's values, normalized and scored


@dataclass
class AttributeCandidate:
    attribute: Attribute
    key: str  # closed: value id; open: normalized value
    match: Match | None
    features: dict[str, float]
    score: float = 0.0
    source: str = "ranker"  # "llm" when only the LLM named it


def neighbour_votes(
    attr: Attribute, k: AttributeKnowledge, neighbours: Sequence[tuple[dict[str, tuple[str, ...]], float]]
) -> dict[str, float]:
    """Similarity-weighted share of the neighbours (those whose category has the attribute
    and that carry a value) voting for each value."""
    votes: dict[str, float] = {}
    total = 0.0
    for values, weight in neighbours:
        vals = values.get(attr.id)
        if not vals:
            continue
        key = k.value_key(attr, vals[0])
        if key:
            votes[key] = votes.get(key, 0.0) + weight
        total += weight
    return {v: w / total for v, w in votes.items()} if total else votes


def candidates_for(
    attr: Attribute,
    text: ProductText,
    k: AttributeKnowledge,
    normalizer: ValueNormalizer,
    votes: dict[str, float],
    own: Gold | None = None,
    classes: dict[str, float] | None = None,
) -> list[AttributeCandidate]:
    classes = classes or {}
    out: dict[tuple[str, str, tuple[int, int]], AttributeCandidate] = {}
    fill = k.fill_rate(attr.id, own)
    closed = 1.0 if attr.closed else 0.0

    def add(key: str | None, match: Match | None, feats: dict[str, float]) -> None:
        if not key:
            return
        ident = (key, match.field if match else "", match.span if match else (0, 0))
        base = {
            "fill_rate": fill, "closed": closed,
            "neighbour_vote": votes.get(key, 0.0),
            "classifier": classes.get(key, 0.0),
            "neighbour_only": 1.0 if match is None else 0.0,
        }
        if match is not None:
            base.update(
                in_title=1.0 if match.field == "title" else 0.0,
                position=math.log1p(match.position),
                tokens=float(match.tokens), chars=math.log1p(len(match.text)),
                has_digit=1.0 if any(c.isdigit() for c in match.text) else 0.0,
                has_alpha=1.0 if any(c.isalpha() for c in match.text) else 0.0,
                context=k.context_precision(attr.id, previous_token(text, match.field, match.position)),
            )
        base.update(feats)
        cand = out.get(ident)
        if cand is None or _strength(base) > _strength(cand.features):
            out[ident] = AttributeCandidate(attr, key, match, base)

    table = k.surfaces.get(attr.id, {})
    for surface, counts in table.items():
        if not text.contains(surface):
            continue
        prec, _occ = k.precision(attr.id, surface, own)
        seen = sum(counts.values()) - (1 if own is not None and surface in own.surfaces else 0)
        key = counts.most_common(1)[0][0] if counts else None
        matches = list(text.find(surface))
        for match in matches[:1]:  # the first occurrence, in reading order
            if not attr.closed:
                key = normalizer.normalize(attr, match.text) if seen <= 0 else key
            add(key, match, {
                "whole": 1.0 if text.whole(*_where(text, match)) else 0.0,
                "from_lexicon": 1.0, "lex_precision": prec, "lex_seen": math.log1p(max(seen, 0)),
                "taxonomy_name": 1.0 if attr.closed and sum(counts.values()) == 0 else 0.0,
                "occurrences": float(len(matches)),
            })
    coarse = k.coarse_shapes.get(attr.id)
    if coarse and (attr.value_type in PATTERN_TYPES or not attr.closed):
        # every span is looked at, so only cheap work here; the best few are then normalized
        shares: dict[str, tuple[float, float]] = {}
        pending: list[tuple[float, int, int, int, float, float]] = []
        for fi, i, n, shape in text.shaped_spans(MAX_PATTERN_TOKENS, MAX_PATTERN_CHARS):
            share = shares.get(shape)
            if share is None:
                share = (k.shape_share(attr.id, coarse_shape_of(shape), coarse=True),
                         k.shape_share(attr.id, shape))
                shares[shape] = share
            if share[0] < 0.02:
                continue
            pending.append((share[0] + share[1], fi, i, n, share[0], share[1]))
        pending.sort(key=lambda p: (-p[0], p[1], p[2], p[3]))
        for _, fi, i, n, coarse_share, fine_share in pending[:MAX_SHAPE_SPANS]:
            match = text.match(fi, i, n)
            key = k.value_key(attr, normalizer.normalize(attr, match.text))
            toks = tuple(t.text for t in text.fields[fi].tokens[i : i + n])
            add(key, match, {
                "from_shape": 1.0, "shape_share": fine_share, "coarse_share": coarse_share,
                "whole": 1.0, "occurrences": float(len(text.grams.get(toks, ()))),
            })
    if attr.closed:  # an open value must be read from the text: neighbours only vote
        for key in sorted(votes, key=lambda v: -votes[v])[:3]:
            add(key, None, {})
        for key in sorted(classes, key=lambda v: -classes[v])[:2]:
            add(key, None, {})
    ranked = sorted(out.values(), key=lambda c: -_strength(c.features))
    return ranked[:MAX_CANDIDATES]


def _where(text: ProductText, match: Match) -> tuple[int, int, int]:
    fi = next(i for i, f in enumerate(text.fields) if f.name == match.field)
    return fi, match.position, match.tokens


def _strength(features: dict[str, float]) -> float:
    """A cheap pre-score that keeps the ranker's work bounded (the best MAX_CANDIDATES)."""
    return (
        features.get("lex_precision", 0.0) + (features.get("shape_share", 0.0) + features.get("coarse_share", 0.0)) * (
            0.5 + features.get("context", 0.0)) + features.get("neighbour_vote", 0.0)
        + features.get("classifier", 0.0)
        + 0.1 * features.get("in_title", 0.0)
    )


def feature_row(c: AttributeCandidate) -> list[float]:
    return [c.features.get(name, 0.0) for name in FEATURES]
