"""Product text as tokens with character offsets: what attribute extraction matches against.

Matching is on token sequences (lowercased, NFKC), so ``"HP"`` matches ``"hp"`` but not the
``hp`` inside ``"hpe"``, and every match maps back to a ``[start, end)`` span of the field
it was found in, which is what a result's evidence cites and what the validator checks.
Tokens are runs of letters, runs of digits, or single other characters (``-``, ``/``,
``"``…): ``"535683-B21"`` is ``535683 - b 21``. Whitespace separates, it is not a token.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache

from taxonomy.folding import fold

_TOKEN = re.compile(r"[^\W\d_]+|\d+|[^\w\s]|_", re.UNICODE)
MAX_NGRAM = 6
#: fields are read up to this many characters: descriptions can be long, values sit early
MAX_FIELD_CHARS = 4000


def tokens_of(text: str) -> tuple[str, ...]:
    """The folded tokens of ``text`` (what a surface is matched as)."""
    return tuple(m.group(0) for m in _TOKEN.finditer(fold(text)))


@lru_cache(maxsize=65536)
def coarse_shape_of(shape: str) -> str:
    """A shape with letter and digit runs merged (``A9-A9`` → ``X-X``): how identifiers are
    built, whatever their lengths and mix."""
    return re.sub(r"(?:9|Aa|A|a)+", "X", shape)


def shape_of(text: str) -> str:
    """A value's shape: digit runs → ``9``, letter runs → ``A``/``a``/``Aa`` by case, other
    characters kept, spaces kept as one: ``535683-B21`` → ``9-A9``, ``2.13 GHz`` → ``9.9 Aa``."""
    out: list[str] = []
    for m in re.finditer(r"[^\W\d_]+|\d+|\s+|.", unicodedata.normalize("NFKC", text.strip())):
        tok = m.group(0)
        if tok.isspace():
            out.append(" ")
        elif tok.isdigit():
            out.append("9")
        elif tok.isalpha():
            out.append("A" if tok.isupper() and len(tok) > 1 else "Aa" if tok[0].isupper() else "a")
        else:
            out.append(tok)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Token:
    text: str  # folded
    start: int  # offsets in the field's original text
    end: int
    shape: str = ""  # shape_of the token as written


@dataclass(frozen=True)  # no slots: cached_property keeps the tokens in __dict__
class Field:
    """One input field (``title``, ``description``, ``category_text``, ``attributes.<key>``)."""

    name: str
    text: str

    @cached_property
    def tokens(self) -> tuple[Token, ...]:
        text = self.text[:MAX_FIELD_CHARS]
        out: list[Token] = []
        # tokenise the original text so offsets are exact; fold each token on its own
        for m in re.finditer(r"[^\W\d_]+|\d+|[^\w\s]|_", text, re.UNICODE):
            folded = fold(m.group(0))
            shape = shape_of(m.group(0))
            for piece in _TOKEN.findall(folded) or ([folded] if folded else []):  # "" for a soft hyphen
                out.append(Token(piece, m.start(), m.end(), shape))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Match:
    field: str
    span: tuple[int, int]
    text: str  # as written in the input
    position: int  # token index in the field
    tokens: int  # how many tokens


class ProductText:
    """A product's fields, tokenised once, with an n-gram index for surface lookups."""

    def __init__(self, fields: list[Field]) -> None:
        self.fields = [f for f in fields if f.text]
        self._grams: dict[tuple[str, ...], list[tuple[int, int]]] | None = None
        self._shaped: dict[tuple[int, int], list[tuple[int, int, int, str]]] = {}

    @classmethod
    def of(
        cls,
        title: str,
        description: str = "",
        *,
        category_text: str = "",
        attributes: Mapping[str, str] | None = None,
    ) -> ProductText:
        fields = [Field("title", title), Field("description", description)]
        if category_text:
            fields.append(Field("category_text", category_text))
        for key, value in (attributes or {}).items():
            fields.append(Field(f"attributes.{key}", value))
        return cls(fields)

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def grams(self) -> dict[tuple[str, ...], list[tuple[int, int]]]:
        """n-gram (≤ MAX_NGRAM tokens) → [(field index, token index)], in reading order."""
        if self._grams is None:
            grams: dict[tuple[str, ...], list[tuple[int, int]]] = {}
            for fi, f in enumerate(self.fields):
                toks = [t.text for t in f.tokens]
                for i in range(len(toks)):
                    for n in range(1, min(MAX_NGRAM, len(toks) - i) + 1):
                        grams.setdefault(tuple(toks[i : i + n]), []).append((fi, i))
            self._grams = grams
        return self._grams

    def contains(self, surface: tuple[str, ...]) -> bool:
        return surface in self.grams

    def find(self, surface: tuple[str, ...]) -> Iterator[Match]:
        """Every occurrence of a tokenised surface, in reading order."""
        for fi, i in self.grams.get(surface, ()):
            yield self.match(fi, i, len(surface))

    def match(self, field_index: int, start: int, n: int) -> Match:
        f = self.fields[field_index]
        a, b = f.tokens[start].start, f.tokens[start + n - 1].end
        return Match(f.name, (a, b), f.text[a:b], start, n)

    def spans(self, max_tokens: int = 5) -> Iterator[tuple[int, int, int]]:
        """Every (field index, token index, length) up to ``max_tokens`` long: the raw
        material of pattern candidates."""
        for fi, f in enumerate(self.fields):
            n_tok = len(f.tokens)
            for i in range(n_tok):
                for n in range(1, min(max_tokens, n_tok - i) + 1):
                    yield fi, i, n

    def shaped_spans(self, max_tokens: int, max_chars: int) -> list[tuple[int, int, int, str]]:
        """(field index, token index, length, shape) of every span that starts and ends at
        word edges, starts within ``max_chars`` of its field and is at most ``max_tokens``
        long; computed once per product, whatever number of attributes look at it."""
        key = (max_tokens, max_chars)
        cached = self._shaped.get(key)
        if cached is None:
            cached = [
                (fi, i, n, self.span_shape(fi, i, n))
                for fi, i, n in self.spans(max_tokens)
                if self.fields[fi].tokens[i].start <= max_chars and self.whole(fi, i, n)
            ]
            self._shaped[key] = cached
        return cached

    def span_shape(self, field_index: int, start: int, n: int) -> str:
        """shape_of the text of ``n`` tokens from ``start``, from the tokens' shapes."""
        toks = self.fields[field_index].tokens
        parts = [toks[start].shape]
        for i in range(start + 1, start + n):
            if toks[i].start == toks[i - 1].start:
                continue  # pieces of one written token share its shape
            if toks[i].start > toks[i - 1].end:
                parts.append(" ")
            parts.append(toks[i].shape)
        return "".join(parts)

    def whole(self, field_index: int, start: int, n: int) -> bool:
        """The span starts and ends at word edges (not inside ``70C1XY0``)."""
        f = self.fields[field_index]
        a, b = f.tokens[start].start, f.tokens[start + n - 1].end
        return (a == 0 or not f.text[a - 1].isalnum()) and (b >= len(f.text) or not f.text[b].isalnum())

    def grounded(self, field: str, span: tuple[int, int], value: str) -> bool:
        """``value`` is what the input holds at ``span`` of ``field`` (folded comparison)."""
        f = self.field(field)
        if f is None:
            return False
        a, b = span
        return 0 <= a < b <= len(f.text) and fold(f.text[a:b]) == fold(value)

    def locate(self, value: str) -> Match | None:
        """The first occurrence of ``value`` (as tokens) in the text, if any."""
        toks = tokens_of(value)
        if not toks or len(toks) > MAX_NGRAM:
            return self._scan(value)
        return next(self.find(toks), None)

    def _scan(self, value: str) -> Match | None:
        want = fold(value)
        for fi, f in enumerate(self.fields):
            toks = f.tokens
            for i in range(len(toks)):
                for j in range(i, len(toks)):
                    piece = fold(f.text[toks[i].start : toks[j].end])
                    if piece == want:
                        return self.match(fi, i, j - i + 1)
                    if len(piece) > len(want):
                        break
        return None
