"""Normalisation used only to *suggest* the right id for a near miss; matching stays exact.

A key folds case, Unicode compatibility forms (NFKC: full-width letters, ligatures),
common Cyrillic/Greek letters that look Latin, dash variants, whitespace and invisible
format characters (zero-width spaces, BOM), so ``" Ab-3"``, ``"aB-3"`` and ``"Аb‐3"``
(Cyrillic A, Unicode hyphen) all point back to ``"Ab-3"``.
"""

from __future__ import annotations

import unicodedata

# letters that render like Latin ones in most fonts (a subset of Unicode confusables)
_CONFUSABLES = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d",
    "ӏ": "l", "ԛ": "q", "ԝ": "w",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ζ": "z", "μ": "u",
    # dashes and quotes
    "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "―": "-", "−": "-",
    "‘": "'", "’": "'", "“": '"', "”": '"',
}  # fmt: skip


def lookalike_key(text: str) -> str:
    """A folded form of ``text``: equal keys mean "a human would read these as the same"."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    out = []
    for ch in folded:
        if ch.isspace() or unicodedata.category(ch) in {"Cf", "Cc", "Mn"}:
            continue  # whitespace, zero-width characters, combining accents
        out.append(_CONFUSABLES.get(ch, ch))
    return "".join(out)


def strip_accents(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
