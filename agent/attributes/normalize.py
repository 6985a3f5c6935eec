"""Normalization of a value as written (``"120GB"``, ``"4 3/4"``, ``"HP"``) into the
taxonomy's form (``"120 Gigabytes"``, ``"12.1"``, ``"Hewlett-Packard"``).

Learned from the examples' (as written, normalized) pairs first, then the attribute's
machine rule: the same writing seen before → its most frequent normalized form; the same
*template* (numbers abstracted: ``"#GB"`` → ``"# Gigabytes"``) → that template; a number
under a unit seen before → the ratio learned for that unit (inches → cm is 2.54, kept to
the decimals the examples use); else the rule's ``kind`` (``alphanumeric_only``,
``lowercase``, ``uppercase``); else the value as written. Every step is deterministic and
only rewrites what the input holds, so a normalized open value stays grounded.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction

from taxonomy.folding import fold
from taxonomy.model import Attribute

# a quantity as written: "4", "4.5", "4,5", "3/4", "4 3/4", "47-1/4"
_QUANTITY = re.compile(
    r"(?<![\w.])(?P<whole>\d+(?:[.,]\d+)?)?(?:(?:\s+|-)?(?P<num>\d+)/(?P<den>\d+))?(?![\d/])"
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def parse_quantity(text: str) -> tuple[float, str] | None:
    """The first quantity in ``text`` and what follows it (its unit, folded), or None."""
    for m in _QUANTITY.finditer(text):
        whole, num, den = m.group("whole"), m.group("num"), m.group("den")
        if whole is None and num is None:
            continue
        value = Fraction(0)
        if whole is not None:
            value += Fraction(whole.replace(",", "."))
        if num is not None and den is not None and int(den) != 0:
            value += Fraction(int(num), int(den))
        unit = fold(text[m.end() :]).strip(" .-()")
        return float(value), unit[:12]
    return None


def template_of(text: str, *, folded: bool = True) -> tuple[str, tuple[str, ...]]:
    """``text`` with each number replaced by ``#`` (folded, to look up a writing; as written,
    for a normalized form), and the numbers."""
    numbers = tuple(_NUMBER.findall(text))
    return _NUMBER.sub("#", fold(text) if folded else " ".join(text.split())), numbers


@dataclass
class ValueNormalizer:
    exact: dict[str, dict[str, Counter[str]]] = field(default_factory=lambda: defaultdict(dict))
    templates: dict[str, dict[str, Counter[str]]] = field(default_factory=lambda: defaultdict(dict))
    ratios: dict[str, dict[str, Counter[tuple[float, int]]]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    #: attribute id -> Counter((start, length)) of the normalized value inside the written
    #: one's letters and digits ("025932384141" → "25932" is (1, 5)), and how many pairs
    slices: dict[str, Counter[tuple[int, int]]] = field(default_factory=lambda: defaultdict(Counter))
    pair_counts: Counter[str] = field(default_factory=Counter)

    def learn(self, pairs: Iterable[tuple[str, str, str]]) -> ValueNormalizer:
        """``(attribute id, as written, normalized)`` triples."""
        for attr, mention, value in pairs:
            if not mention.strip() or not value.strip():
                continue
            self.exact[attr].setdefault(fold(mention), Counter())[value] += 1
            self.pair_counts[attr] += 1
            alnum, target = _alnum(mention), _alnum(value)
            if target and alnum != target and target in alnum:
                self.slices[attr][(alnum.index(target), len(target))] += 1
            m_tpl, m_nums = template_of(mention)
            v_tpl, v_nums = template_of(value, folded=False)
            if m_nums and m_nums == v_nums and m_tpl != "#":
                self.templates[attr].setdefault(m_tpl, Counter())[v_tpl] += 1
            q = parse_quantity(mention)
            if q is not None and q[0] > 0 and re.fullmatch(r"\d+(\.\d+)?", value.strip()):
                ratio = round(float(value) / q[0], 2)
                decimals = len(value.strip().split(".")[1]) if "." in value else 0
                self.ratios[attr].setdefault(q[1], Counter())[(ratio, decimals)] += 1
        return self

    def normalize(self, attribute: Attribute, mention: str) -> str:
        attr = attribute.id
        seen = self.exact.get(attr, {}).get(fold(mention))
        if seen:
            return seen.most_common(1)[0][0]
        tpl, numbers = template_of(mention)
        known = self.templates.get(attr, {}).get(tpl)
        if known and numbers:
            out = known.most_common(1)[0][0]
            for n in numbers:
                out = out.replace("#", n, 1)
            return out
        rule = attribute.normalization
        if rule is not None and rule.kind in ("alphanumeric_only", "lowercase", "uppercase"):
            return apply_rule(attribute, mention)
        cut = self.slices.get(attr)
        if cut:
            (start, length), agreeing = cut.most_common(1)[0]
            alnum = _alnum(mention)
            # a consistent cut (most pairs agree), e.g. the manufacturer code of a UPC
            if agreeing >= max(3, 0.6 * self.pair_counts[attr]) and len(alnum) >= start + length:
                return alnum[start : start + length]
        by_unit = self.ratios.get(attr)
        q = parse_quantity(mention)
        if (by_unit and q is not None and _is_measure(mention)
                and attribute.value_type in ("number", "number_with_unit")):
            counts = by_unit.get(q[1]) or sum(by_unit.values(), Counter())
            (ratio, decimals), _ = counts.most_common(1)[0]
            return f"{q[0] * ratio:.{decimals}f}"
        return apply_rule(attribute, mention)


_MEASURE = re.compile(r"^\s*\d[\d\s.,/-]*[^\W\d_]{0,12}\.?\s*[\"']{0,2}\s*$")


def _is_measure(text: str) -> bool:
    """A quantity and at most a short unit (``4 3/4"``, ``12 in``, ``30cm``): what a learned
    unit ratio may rewrite; identifiers such as ``583718-001`` are not measures."""
    return bool(_MEASURE.match(text)) and text.count("-") <= 1


def _alnum(text: str) -> str:
    return re.sub(r"[\W_]+", "", text)


def apply_rule(attribute: Attribute, text: str) -> str:
    rule = attribute.normalization
    text = " ".join(text.split())
    if rule is None:
        return text
    if rule.kind == "alphanumeric_only":
        return re.sub(r"[\W_]+", "", text) or text
    if rule.kind == "lowercase":
        return text.lower()
    if rule.kind == "uppercase":
        return text.upper()
    return text
