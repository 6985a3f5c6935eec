"""Which attributes a caller wants tagged (``on``, ``off`` or named ones): parsing it from a
query parameter or a command-line flag, and the one check against the taxonomy.

The same rules everywhere (HTTP ``?attributes=``, job lines, ``tagsmith tag --attributes``):

- ``on`` (the category's attributes, inherited ones included) and ``off`` (none) stand alone;
  anything else is a list of attribute ids (exact) or names (case- and
  whitespace-insensitive), at most :data:`MAX_SELECTED` of at most :data:`MAX_NAME`
  characters each.
- A listed name that is not an attribute of the chosen category is simply not tagged
  (products of different categories have different attributes). Only when *none* of the
  names is an active attribute anywhere in the taxonomy in use is the request refused
  (HTTP 422 ``unknown_attributes``): that is a typo or the wrong taxonomy, never useful.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from agent.contract import BLANK, NOT_BLANK, AttributeSelection

if TYPE_CHECKING:  # kept light: the settings import this module
    from taxonomy import Snapshot

MAX_SELECTED = 100
MAX_NAME = 200

#: an attribute id or name as asked for (blank ends are stripped, so it must have a non-blank character)
AttributeName = Annotated[str, Field(min_length=1, max_length=MAX_NAME, pattern=NOT_BLANK)]
#: the JSON form (job lines, settings): "on", "off" or a list of ids or names
SelectionField = Literal["on", "off"] | Annotated[list[AttributeName], Field(min_length=1, max_length=MAX_SELECTED)]

SELECTION_HELP = (
    "which of the category's attributes to tag: `on` (all, the default unless "
    "tagging.attributes says otherwise), `off` (none), or attribute ids or names (names are "
    "case-insensitive; repeat the parameter for several). A name the chosen category does not "
    "have is skipped; 422 unknown_attributes only when none of the names is an attribute of "
    "the taxonomy (GET /v1/taxonomy/attributes lists them)"
)


def parse_selection(values: Sequence[str]) -> AttributeSelection:
    """``["on"]`` → on, ``["off"]`` → off, else the names (blank ends stripped, duplicates
    dropped). Raises ValueError for an empty list or an empty name."""
    names = list(dict.fromkeys(v.strip(BLANK) for v in values))
    if not names or not all(names):
        raise ValueError("give on, off, or attribute ids or names (none empty)")
    if len(names) == 1 and names[0] in ("on", "off"):
        return "on" if names[0] == "on" else "off"
    return names


def parse_flag(text: str) -> AttributeSelection:
    """The command-line form: ``on``, ``off`` or ``Color,Size`` (comma-separated)."""
    return parse_selection([part for part in text.split(",") if part.strip()] or [""])


def selection_key(selection: AttributeSelection | None) -> object:
    """A hashable form: requests with equal keys may be tagged together."""
    return tuple(selection) if isinstance(selection, list) else selection


def fold_name(text: str) -> str:
    """The extractor's own matching form of a name (NFKC, case, whitespace), so that a name
    "known" here is one the extractor would select."""
    from taxonomy.folding import fold

    return fold(text)


_known: weakref.WeakKeyDictionary[Snapshot, frozenset[str]] = weakref.WeakKeyDictionary()
_known_lock = threading.Lock()


def _known_names(snapshot: Snapshot) -> frozenset[str]:
    """Ids and folded names of the taxonomy's active attributes (cached per snapshot)."""
    with _known_lock:
        known = _known.get(snapshot)
    if known is None:
        active = [a for a in snapshot.attributes.values() if a.active]
        known = frozenset([a.id for a in active] + [fold_name(a.name) for a in active])
        with _known_lock:
            _known[snapshot] = known
    return known


def unknown_names(snapshot: Snapshot, selection: AttributeSelection | None) -> list[str]:
    """The listed names that are no active attribute (by id or name) of ``snapshot``."""
    if not isinstance(selection, list):
        return []
    known = _known_names(snapshot)
    return [n for n in selection if n not in known and fold_name(n) not in known]


def selection_problem(
    snapshot: Snapshot, selection: AttributeSelection | None, *,
    listed_by: str = "GET /v1/taxonomy/attributes",
) -> str | None:
    """Why ``selection`` cannot be served (None: fine): every listed name is unknown.
    ``listed_by``: where the caller finds the attributes."""
    if not isinstance(selection, list):
        return None
    unknown = unknown_names(snapshot, selection)
    if len(unknown) < len(selection):
        return None
    shown = ", ".join(repr(n) for n in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
    return (
        f"none of the attributes asked for is an attribute of taxonomy version {snapshot.version}: "
        f"{shown}; give attribute ids or names ({listed_by}), or on / off"
    )
