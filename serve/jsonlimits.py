"""The nesting limit of every JSON the service parses: request bodies and job lines.

``json.loads`` recurses once per nesting level: a few hundred bytes of ``[[[[…`` either
exhaust the interpreter's recursion limit (``RecursionError``, which used to surface as a
500) or, below it, cost deep C and validator recursion for nothing. No product needs more
than a handful of levels, so a document nested deeper than the limit is refused *before*
it is parsed, by a linear scan of its brackets outside strings.

Standard library only: used by :mod:`serve.jobs` and by the API's body check alike.
"""

from __future__ import annotations

import json
import re
from array import array
from itertools import accumulate
from typing import Any

#: the default of ``limits.max_json_depth``: objects and arrays nested at most this deep
MAX_JSON_DEPTH = 64

# A string from its opening quote to its closing one, or to the end of the input when it
# is never closed: with the closing quote optional the pattern cannot fail once it
# starts, so no position is rescanned and the scan stays linear on hostile input.
_STRING = re.compile(rb'"[^"\\]*(?:\\[\s\S][^"\\]*)*"?')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
# opening brackets +1, closing ones -1, as signed bytes summed in C by accumulate()
_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


class JsonTooDeep(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"JSON nested deeper than {limit} levels (limits.max_json_depth)")
        self.limit = limit


def too_deep(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the arrays and objects of ``data`` (UTF-8 JSON, valid or not) nest deeper
    than ``limit``. Brackets inside strings do not count (nor after a string that is never
    closed: the parser stops there). An invalid document may be over-counted (it is
    refused either way), never under the depth ``json.loads`` would reach."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False  # the common case: too few brackets to nest that deep, no scan
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKET)
    return max(accumulate(array("b", brackets.translate(_STEP))), default=0) > limit


def loads(data: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` after the depth check: raises :class:`JsonTooDeep` or
    :class:`json.JSONDecodeError` (and UnicodeDecodeError for bytes that are not UTF-8)."""
    if too_deep(data, max_depth):
        raise JsonTooDeep(max_depth)
    return json.loads(data.decode("utf-8"))
