"""Which part of a text an embedder cannot read: the mechanism behind the ``unreadable_text``
review flag (:meth:`retrieval.embedder.Embedder.unreadable`).

An embedder trained on English maps a Chinese title to a vector all the same, and that
vector lands somewhere arbitrary: near whatever other unreadable text the index holds
(measured: a Chinese dress title tagged Tea at 0.80 after one Chinese tea example was
added). Each embedder says which letters it cannot read; this module holds the shared
parts: the script of a letter (from its Unicode name, no extra dependency) and the share
of a text's letters outside a set of covered scripts. Digits, punctuation and symbols are
not letters and count for neither side.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable
from functools import lru_cache

#: a text whose unreadable share is above this is flagged ``unreadable_text``: "mostly"
UNREADABLE_SHARE = 0.5

#: scripts written without spaces between words: an embedder whose features are words
#: split on spaces (the hashing embedder) cannot segment them
UNSPACED_SCRIPTS = frozenset({"CJK", "HIRAGANA", "KATAKANA", "THAI", "LAO", "KHMER", "MYANMAR", "TIBETAN", "YI"})

_WIDTH_PREFIXES = ("HALFWIDTH", "FULLWIDTH")


@lru_cache(maxsize=65536)
def script_of(char: str) -> str | None:
    """The script of a letter as the first word of its Unicode name (``LATIN``, ``CJK``,
    ``CYRILLIC``, ``HANGUL``…; half/full-width forms fold to their script); None for a
    character that is not a letter."""
    if not unicodedata.category(char).startswith("L"):
        return None
    words = unicodedata.name(char, "").split()
    if not words:
        return None
    if words[0] in _WIDTH_PREFIXES and len(words) > 1:
        return words[1]
    return words[0]


def letter_scripts(text: str) -> Counter[str]:
    """How many letters of each script ``text`` holds."""
    counts: Counter[str] = Counter()
    for char in text:
        script = script_of(char)
        if script is not None:
            counts[script] += 1
    return counts


def uncovered_share(
    text: str, *, covered: Collection[str] | None = None, uncovered: Collection[str] = ()
) -> float:
    """Share of the letters of ``text`` in a script not in ``covered`` (None: every script
    is covered) or in ``uncovered``; 0.0 for a text without letters."""
    counts = letter_scripts(text)
    total = sum(counts.values())
    if total == 0:
        return 0.0
    bad = sum(
        n for script, n in counts.items()
        if script in uncovered or (covered is not None and script not in covered)
    )
    return bad / total


def vocabulary_scripts(tokens: Iterable[str], *, min_tokens: int = 100) -> frozenset[str]:
    """The scripts a tokenizer vocabulary covers: those with at least ``min_tokens`` tokens
    of two or more letters (word pieces, without ``##``/``▁`` markers). A BERT vocabulary
    built on English text holds ~22,000 such Latin tokens and single characters only of
    other scripts: it splits a Russian word into letters and maps most Chinese characters
    to ``[UNK]``; a multilingual vocabulary covers many scripts."""
    counts: Counter[str] = Counter()
    for token in tokens:
        piece = token.removeprefix("##").removeprefix("\u2581")
        scripts = [s for s in map(script_of, piece) if s is not None]
        if len(scripts) >= 2:
            counts[scripts[0]] += 1
    return frozenset(s for s, n in counts.items() if n >= min_tokens)
