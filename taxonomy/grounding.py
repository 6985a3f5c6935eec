"""The validator of attribute values a tagger proposes for one product (what a result may
carry), beside :mod:`taxonomy.validator`'s checks of whole tags.

A claim is accepted only when the attribute is an active attribute of the category (own or
inherited) at this snapshot and its value is either an allowed, active value of a closed
attribute, or, for an open attribute, *grounded*: the input holds, at the claimed span of
the claimed field, exactly the text the value was normalized from (compared folded: NFKC,
case, whitespace). Open values are never accepted without a span: a value that is not in
the product's text is a guess. Normalization itself is the tagger's deterministic code, not
model output, so the normalized form is trusted once its source is grounded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from taxonomy.folding import fold
from taxonomy.snapshot import Snapshot

ClaimRule = Literal[
    "unknown_attribute", "attribute_not_applicable", "value_not_allowed", "ungrounded", "malformed",
]


@dataclass(frozen=True, slots=True)
class AttributeClaim:
    attribute: str
    value_id: str | None
    """A closed attribute's value id; None for open attributes."""
    value: str
    field: str | None = None
    span: tuple[int, int] | None = None
    written: str | None = None
    """The text at ``span`` the value was read (and normalized) from."""


@dataclass(frozen=True, slots=True)
class ClaimError:
    index: int
    rule: ClaimRule
    message: str


@dataclass(frozen=True, slots=True)
class ClaimReport:
    errors: tuple[ClaimError, ...]

    @property
    def ok(self) -> bool:
        return not self.errors


def validate_attribute_claims(
    snapshot: Snapshot, category: str, claims: Sequence[AttributeClaim], fields: Mapping[str, str]
) -> ClaimReport:
    """Check ``claims`` for a product of ``category`` whose input ``fields`` (name → text)
    are given. Reports every refused claim; never raises."""
    errors: list[ClaimError] = []
    applicable = (
        {a.id: a for a in snapshot.attributes_for(category)} if category in snapshot else {}
    )
    for i, claim in enumerate(claims):
        attr = snapshot.attributes.get(claim.attribute)
        if attr is None:
            errors.append(ClaimError(i, "unknown_attribute", f"no attribute {claim.attribute!r}"))
            continue
        if claim.attribute not in applicable or attr.deprecated:
            errors.append(ClaimError(
                i, "attribute_not_applicable",
                f"attribute {claim.attribute!r} is not an active attribute of {category!r}",
            ))
            continue
        if not claim.value.strip():
            errors.append(ClaimError(i, "malformed", "an empty value"))
            continue
        if attr.closed:
            value = attr.value(claim.value_id) if claim.value_id is not None else None
            if value is None or value.deprecated:
                errors.append(ClaimError(
                    i, "value_not_allowed",
                    f"{claim.value_id!r} is not an allowed, active value of {attr.id!r}",
                ))
            elif claim.value != value.name:
                errors.append(ClaimError(i, "malformed", f"{claim.value!r} is not the name of {value.id!r}"))
            continue
        if claim.value_id is not None:
            errors.append(ClaimError(i, "malformed", f"open attribute {attr.id!r} has no value ids"))
            continue
        if not _grounded(claim, fields):
            errors.append(ClaimError(
                i, "ungrounded", f"{claim.value!r} for {attr.id!r} is not read from a span of the input",
            ))
    return ClaimReport(tuple(errors))


def _grounded(claim: AttributeClaim, fields: Mapping[str, str]) -> bool:
    if claim.field is None or claim.span is None or claim.written is None:
        return False
    text = fields.get(claim.field)
    start, end = claim.span
    if text is None or not 0 <= start < end <= len(text):
        return False
    return fold(text[start:end]) == fold(claim.written) != ""
