"""How text is compared: the one folding of strings that every matcher uses (the validator's
grounding of attribute values, the attribute extractor's tokens and surfaces, the LLM
step's checks of model answers), so that what one of them finds the others accept.

A string is folded character by character: NFKC-normalised and case-folded, whitespace and
control characters collapsed to one space, invisible format characters (zero-width space,
soft hyphen, bidi marks) dropped. :func:`fold_with_offsets` also maps every folded character
back to its index in the original, so a match in folded text is a span of the input.
"""

from __future__ import annotations

import unicodedata

# ASCII: NFKC changes nothing, casefold() is lower(), no format characters; controls are spaces
_ASCII_CONTROLS = str.maketrans(dict.fromkeys([*range(32), 127], " "))


def fold_with_offsets(text: str) -> tuple[str, list[int]]:
    """``text`` folded (not stripped: a trailing space remains where the text ends
    in whitespace or control characters), with the index in ``text`` of every folded character."""
    chars: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        for c in unicodedata.normalize("NFKC", ch).casefold():
            kind = unicodedata.category(c)
            if kind == "Cf":
                continue
            if c.isspace() or kind == "Cc":
                if chars and chars[-1] != " ":
                    chars.append(" ")
                    index.append(i)
            else:
                chars.append(c)
                index.append(i)
    return "".join(chars), index


def fold(text: str) -> str:
    """The matching form of a string: NFKC, case-folded, whitespace collapsed and stripped,
    format characters dropped (the text of :func:`fold_with_offsets`, stripped)."""
    if text.isascii():
        return " ".join(text.translate(_ASCII_CONTROLS).lower().split())
    return fold_with_offsets(text)[0].strip()
