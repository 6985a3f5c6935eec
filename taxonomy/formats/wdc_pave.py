"""WDC-PAVE's schema file (``schema.json``: 5 categories, each with its attributes).

Shape: ``{"name", "source", "categories": {category name: {"description", "attributes": [{"name",
"description", "annotation_guideline", "normalization", "normalized_type"}]}}}``.

* Each category becomes a root node whose id *is* the category name (WDC-PAVE records carry
  ``"category": "Jewelry"``, so a record's category is a node id as it is).
* Attribute ids are per category (``"<category>/<attribute name>"``): the same name (Product
  Type, Capacity, Width ...) has a different rule in each category. Each is attached to its
  category only. Cardinality is ``single`` (the paper scores one value per attribute).
* ``normalized_type`` is noisy upstream ('None', 'free Text', 'Numeric with Unit ' with a
  trailing space, identifiers typed as decimals): it is mapped leniently to ``value_type``
  (identifiers are recognised by their name as well) and kept as written in ``meta``.
* ``normalization`` becomes a :class:`~taxonomy.model.Normalization` with the instruction text
  as written and a machine-usable ``kind`` read from it (unit conversion with its target unit,
  name expansion, alphanumeric only, upper case; ``custom`` otherwise). An instruction that asks
  for "EXACTLY ONE of the following: - A - B ..." makes the attribute closed, with A, B ... as
  its values (the normalized value must be one of them).
* ``annotation_guideline`` is kept in the attribute's ``meta``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from taxonomy.errors import TaxonomyFormatError
from taxonomy.model import (
    Attribute,
    AttributeValue,
    Node,
    Normalization,
    NormalizationKind,
    TaxonomyDocument,
    ValueType,
)

_TYPES: dict[str, ValueType] = {
    "name": "name",
    "name with numeric": "name",
    "free text": "text",
    "numeric": "number",
    "numeric with decimal": "number",
    "numeric with unit": "number_with_unit",
    "unique numeric id": "identifier",
    "unique alphanumeric id": "identifier",
}
_IDENTIFIER_NAME = re.compile(r"\b(part|model|stock|style)\s+(number|code|id)\b|\b(upc|gtin|ean|isbn|sku|mpn)\b", re.I)
_CHOICE = re.compile(r"\b(exactly|only)\s+one\s+of\s+the\s+following\s*(options)?\s*:", re.I)
#: "... to centimeters (cm)", "... to kilograms (KG)", "... to grams (g)"
_TARGET_UNIT = re.compile(r"\bto\s+[A-Za-z]+\s*\(([A-Za-z]+)\)")


def value_type_of(raw_type: object, name: str) -> ValueType:
    """WDC-PAVE's ``normalized_type`` label as a value type, leniently (unknown/None → text)."""
    if _IDENTIFIER_NAME.search(name):
        return "identifier"
    label = " ".join(str(raw_type or "").split()).lower()
    return _TYPES.get(label, "text")


def choices_of(instruction: str) -> tuple[str, ...]:
    """The options of an "EXACTLY ONE of the following: - A - B" instruction (empty if none)."""
    match = _CHOICE.search(instruction)
    if match is None:
        return ()
    options: list[str] = []
    for line in instruction[match.end():].splitlines():
        if line.strip().startswith("-"):
            options.append(line.strip().lstrip("-").strip())
        elif options:
            break  # the list ends at the first line that is not an option
    return tuple(dict.fromkeys(o for o in options if o))


def normalization_of(instruction: object) -> Normalization | None:
    text = str(instruction or "").strip()
    if not text or text.lower() == "none":
        return None
    kind: NormalizationKind = "custom"
    target_unit: str | None = None
    lowered = text.lower()
    if _CHOICE.search(text):
        kind = "custom"
    elif "non-alphanumeric" in lowered:
        kind = "alphanumeric_only"
    elif "uppercase" in lowered or "upper case" in lowered:
        kind = "uppercase"
    elif "lowercase" in lowered or "lower case" in lowered:
        kind = "lowercase"
    elif (unit := _TARGET_UNIT.search(text)) is not None and "convert" in lowered:
        kind, target_unit = "convert_units", unit.group(1).lower()
    elif "expand" in lowered or "full form" in lowered:
        kind = "expand_names"
    return Normalization(kind=kind, target_unit=target_unit, instruction=text)


def _attribute(category: str, raw: Mapping[str, Any]) -> Attribute:
    name = str(raw["name"]).strip()
    normalization = normalization_of(raw.get("normalization"))
    choices = choices_of(normalization.instruction or "") if normalization else ()
    value_type = value_type_of(raw.get("normalized_type"), name)
    if choices and value_type != "name":
        value_type = "text"  # a closed list's values are labels (e.g. Color(s), typed an id upstream)
    meta: dict[str, Any] = {"normalized_type": raw.get("normalized_type")}
    if raw.get("annotation_guideline"):
        meta["annotation_guideline"] = raw["annotation_guideline"]
    return Attribute(
        id=f"{category}/{name}",
        name=name,
        cardinality="single",
        values=tuple(AttributeValue(id=c, name=c) for c in choices),
        open_values=not choices,
        description=raw.get("description") or None,
        value_type=value_type,
        unit=normalization.target_unit if normalization else None,
        normalization=normalization,
        meta=meta,
    )


def parse_wdc_pave(data: object) -> TaxonomyDocument:
    if not isinstance(data, Mapping) or not isinstance(data.get("categories"), Mapping):
        raise TaxonomyFormatError('a WDC-PAVE schema file has a "categories" object')
    nodes: list[Node] = []
    attributes: list[Attribute] = []
    try:
        for category, spec in data["categories"].items():
            own = [_attribute(category, raw) for raw in spec.get("attributes") or []]
            ids = [a.id for a in own]
            if len(set(ids)) != len(ids):
                raise TaxonomyFormatError(f"category {category!r} lists an attribute twice")
            nodes.append(Node(id=category, name=category, description=spec.get("description") or None,
                              attributes=tuple(ids)))
            attributes.extend(own)
        return TaxonomyDocument(
            name=str(data.get("name") or "WDC-PAVE"),
            source=None if data.get("source") is None else str(data["source"]),
            nodes=tuple(nodes),
            attributes=tuple(attributes),
        )
    except (ValidationError, KeyError, TypeError, AttributeError) as exc:
        raise TaxonomyFormatError(f"invalid WDC-PAVE schema file: {exc}") from exc
