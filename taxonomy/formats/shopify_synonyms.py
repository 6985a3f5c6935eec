"""Synonyms for Shopify attribute values, so that plain text matching finds them.

Shopify names values the way a catalog form does ("Male", "Gray", "Aluminum"); product text
says "men's jeans", "grey", "aluminium". :func:`add_value_synonyms` adds, to the packaged
default only (``scripts/build_default_taxonomy.py``), two reviewable kinds of synonyms:

* :data:`VALUE_SYNONYMS`: by attribute *handle* and value name, words that mean exactly that
  value of that attribute. Keyed by attribute, not by value name alone: "Male" of Target
  gender gets "men's", "Male" of Connector gender does not. (Value names are unique within a
  Shopify attribute, case-insensitively: checked by the tests.)
* :data:`UK_SPELLINGS`: whole words of a value name respelled the British way ("Gray" →
  "Grey", "Aluminum alloy" → "Aluminium alloy"), for every attribute: a spelling, never a
  change of meaning.

Only what is clearly correct goes here: no colour is inferred from a fabric (denim jeans are
not always blue), no size from a waist × inseam pair (Shopify's Size has "32", a waist, but
no "32x32"). A synonym equal to the name, or given twice, is dropped; the order is the table's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from taxonomy.model import Attribute, TaxonomyDocument

#: attribute handle → value name → synonyms (lower case; matching is expected to ignore case)
VALUE_SYNONYMS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    # Target gender is about who the product is for, whatever the age (Age group says that):
    # boys' and girls' clothing have a target gender too
    "target_gender": {
        "Male": ("men", "men's", "mens", "boys", "boys'", "boy's"),
        "Female": ("women", "women's", "womens", "ladies", "ladies'", "lady's", "girls", "girls'", "girl's"),
        "Unisex": ("gender-neutral", "gender neutral"),
    },
    "color": {
        "Multicolor": ("multi-color", "multicolored", "multicolour", "multi-colour", "multicoloured"),
        "Navy": ("navy blue",),
    },
    # clothing sizes: the abbreviation Shopify puts in brackets, alone, and the numeric forms
    # of the X sizes; not the one-letter S, M and L, which plain text uses for much else
    "size": {
        "Triple extra small (XXXS)": ("xxxs", "3xs"),
        "Double extra small (XXS)": ("xxs", "2xs"),
        "Extra small (XS)": ("xs",),
        "Extra large (XL)": ("xl",),
        "Double extra large (XXL)": ("xxl", "2xl"),
        "Triple extra large (XXXL)": ("xxxl", "3xl"),
        "Four extra large (4XL)": ("4xl", "xxxxl"),
        "Five extra large (5XL)": ("5xl", "xxxxxl"),
        "Six extra large (6XL)": ("6xl", "xxxxxxl"),
    },
}

#: American → British spelling of whole words (lower case); the case of the first letter is kept
UK_SPELLINGS: Mapping[str, str] = {
    "gray": "grey",
    "color": "colour",
    "colors": "colours",
    "colored": "coloured",
    "aluminum": "aluminium",
    "fiber": "fibre",
    "fibers": "fibres",
    "fiberglass": "fibreglass",
    "jewelry": "jewellery",
    "center": "centre",
}

_WORD = re.compile(r"[A-Za-z]+")


def uk_spelling(name: str) -> str:
    """``name`` with the words of :data:`UK_SPELLINGS` respelled (the name itself if none)."""
    def respell(match: re.Match[str]) -> str:
        word = match.group(0)
        uk = UK_SPELLINGS.get(word.lower())
        if uk is None:
            return word
        return uk.capitalize() if word[0].isupper() else uk

    return _WORD.sub(respell, name)


def add_value_synonyms(document: TaxonomyDocument) -> TaxonomyDocument:
    """``document`` with the synonyms of both tables added to its attribute values (a Shopify
    attribute carries its handle in ``meta["handle"]``, as :mod:`.shopify_attributes` sets it)."""
    attributes = [_with_synonyms(a) for a in document.attributes]
    if all(a is b for a, b in zip(attributes, document.attributes, strict=True)):
        return document
    return document.model_copy(update={"attributes": tuple(attributes)})


def _with_synonyms(attribute: Attribute) -> Attribute:
    table = VALUE_SYNONYMS.get(str(attribute.meta.get("handle", "")), {})
    values = []
    for value in attribute.values:
        wanted = (*table.get(value.name, ()), uk_spelling(value.name))
        names = {value.name.casefold(), *(s.casefold() for s in value.synonyms)}
        extra: list[str] = []
        for synonym in wanted:
            if synonym.casefold() not in names:
                names.add(synonym.casefold())
                extra.append(synonym)
        values.append(value.model_copy(update={"synonyms": (*value.synonyms, *extra)}) if extra else value)
    if all(a is b for a, b in zip(values, attribute.values, strict=True)):
        return attribute
    return attribute.model_copy(update={"values": tuple(values)})
