"""The data model of a taxonomy: category nodes, attributes with their values, the document.

A :class:`TaxonomyDocument` is the plain, serialisable content of one taxonomy version; a
:class:`~taxonomy.snapshot.Snapshot` wraps one with a frozen networkx graph and indexes.
Derived facts (level, path, is_leaf) are computed by the snapshot, never trusted from input.
"""

from __future__ import annotations

import gc
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue


def _check_id(value: str) -> str:
    # ids are compared byte-exactly everywhere: refuse the invisible variants at the door
    if not value:
        raise ValueError("an id must not be empty")
    if value != value.strip():
        raise ValueError(f"id {value!r} has leading or trailing whitespace")
    if value.isascii() and value.isprintable():
        return value  # the common case, decided in C: printable ASCII has no Cc/Cf character
    if any(unicodedata.category(ch) in {"Cc", "Cf"} for ch in value):
        raise ValueError(f"id {value!r} contains control or format characters")
    return value


def _check_name(value: str) -> str:
    if not value.strip():
        raise ValueError("a name must not be empty")
    if value.isprintable():
        return value  # no Cc character (isprintable is False for every Cc code point)
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError(f"name {value!r} contains control characters")
    return value


def _char_class(*categories: str, blank: bool = False) -> str:
    """The BMP code points of ``categories`` (plus Python's whitespace when ``blank``) as regex
    class ranges, with explicit escapes that ECMA (JSON Schema), Python and Rust read alike."""
    def wanted(c: int) -> bool:
        return unicodedata.category(chr(c)) in categories or (blank and chr(c).isspace())

    ranges, c = [], 0
    while c < 0x10000:
        if wanted(c):
            start = c
            while c + 1 < 0x10000 and wanted(c + 1):
                c += 1
            ranges.append(f"\\u{start:04x}" + (f"-\\u{c:04x}" if c > start else ""))
        c += 1
    return "".join(ranges)


# The same rules as _check_id / _check_name, for the JSON Schema only (the validators enforce
# them with clearer messages). A portable pattern cannot name code points above U+FFFF, so
# the few supplementary-plane format characters are refused by _check_id alone (see
# docs/api-conformance.md).
ID_PATTERN = f"^[^{_char_class('Cc', 'Cf', blank=True)}]([^{_char_class('Cc', 'Cf')}]*[^{_char_class('Cc', 'Cf', blank=True)}])?$"
NAME_PATTERN = f"^[^{_char_class('Cc')}]*[^{_char_class('Cc', blank=True)}][^{_char_class('Cc')}]*$"


def _documented(pattern: str, max_length: int) -> Any:
    return Field(max_length=max_length, json_schema_extra={"pattern": pattern})


NodeId = Annotated[str, _documented(ID_PATTERN, 512), AfterValidator(_check_id)]
Name = Annotated[str, _documented(NAME_PATTERN, 1000), AfterValidator(_check_name)]
#: attribute values of open-vocabulary sources are free text, sometimes long
ValueId = Annotated[str, _documented(ID_PATTERN, 10_000), AfterValidator(_check_id)]
ValueName = Annotated[str, _documented(NAME_PATTERN, 10_000), AfterValidator(_check_name)]
Cardinality = Literal["single", "multi"]
#: what an open attribute's values are: free text, a name (brand, manufacturer), a number, a
#: number with a unit ("2.0 GHz"), an identifier (part or model number, GTIN)
ValueType = Literal["text", "name", "number", "number_with_unit", "identifier"]
#: machine-usable normalization rules; ``custom`` means only the instruction text applies
NormalizationKind = Literal[
    "expand_names", "convert_units", "alphanumeric_only", "lowercase", "uppercase", "custom"
]
Meta = dict[str, JsonValue]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class Node(BaseModel):
    """One category. ``level`` is 1 for a root; the snapshot keeps it consistent with ``parent``.

    ``attributes`` lists the attribute ids attached *here*; descendants inherit them.
    ``excluded_attributes`` lists inherited attribute ids that do *not* apply here (nor, by
    inheritance, below, unless a descendant attaches them again): real taxonomies are not
    strictly inherited (Shopify lists no Material for bird cage dishes, though their ancestor
    has it). The category's attributes are the fold over its path, root first: add each node's
    ``attributes``, remove its ``excluded_attributes`` (see ``Snapshot.attributes_for``).
    ``meta`` keeps source fields we do not interpret (e.g. Shopify ``short_id``): read-only.
    """

    model_config = _FROZEN

    id: NodeId
    name: Name
    parent: NodeId | None = None
    level: int = Field(default=1, ge=1)
    synonyms: tuple[str, ...] = ()
    description: str | None = None
    deprecated: bool = False
    replaced_by: NodeId | None = None
    attributes: tuple[NodeId, ...] = ()
    excluded_attributes: tuple[NodeId, ...] = ()
    meta: Meta = Field(default_factory=dict)

    @property
    def active(self) -> bool:
        return not self.deprecated


class AttributeValue(BaseModel):
    """One allowed value of a closed attribute. A ``deprecated`` value stays resolvable (stored
    tags keep their meaning) but is no longer offered or accepted for new tags; ``replaced_by``
    names the value of the same attribute that stored tags migrate to."""

    model_config = _FROZEN

    id: ValueId
    name: ValueName
    synonyms: tuple[str, ...] = ()
    deprecated: bool = False
    replaced_by: ValueId | None = None

    @property
    def active(self) -> bool:
        return not self.deprecated


class Normalization(BaseModel):
    """How an extracted value is normalized: a rule code can apply (``kind``, plus
    ``target_unit`` for ``convert_units``) and the human instruction an LLM prompt can quote
    (``instruction``, e.g. WDC-PAVE's "Expand the Manufacturer Name ...")."""

    model_config = _FROZEN

    kind: NormalizationKind = "custom"
    target_unit: str | None = Field(default=None, max_length=100)
    instruction: str | None = Field(default=None, max_length=10_000)


class Attribute(BaseModel):
    """An attribute such as Color: its allowed values and how many a product may take.

    *Closed* attributes have a value list and ``open_values=False``: a product's value must be
    one of the (active) ``values``. *Open* ones (``open_values=True``) accept any value read
    from the text (``values`` are then examples, as published by retailers without an
    attribute schema); ``value_type`` says what such a value is, ``unit`` the unit numbers are
    given in, ``normalization`` how a value read from the text is normalized.
    ``meta`` keeps source fields we do not interpret (e.g. WDC-PAVE's raw type label).
    """

    model_config = _FROZEN

    id: NodeId
    name: Name
    cardinality: Cardinality = "single"
    values: tuple[AttributeValue, ...] = ()
    open_values: bool = False
    description: str | None = None
    value_type: ValueType = "text"
    unit: str | None = Field(default=None, max_length=100)
    normalization: Normalization | None = None
    deprecated: bool = False
    meta: Meta = Field(default_factory=dict)

    @property
    def closed(self) -> bool:
        return not self.open_values and bool(self.values)

    @property
    def active(self) -> bool:
        return not self.deprecated

    def value(self, value_id: str) -> AttributeValue | None:
        return next((v for v in self.values if v.id == value_id), None)

    def active_values(self) -> tuple[AttributeValue, ...]:
        return tuple(v for v in self.values if not v.deprecated)


class TaxonomyDocument(BaseModel):
    """The full content of one taxonomy version, in document (source) order."""

    model_config = _FROZEN

    name: str = ""
    source_version: str | None = Field(default=None, description="the source's own label, e.g. 2024-07")
    source: str | None = None
    nodes: tuple[Node, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    meta: Meta = Field(default_factory=dict)


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a taxonomy is parsed or built.

    That allocates some 100,000 acyclic objects (models, tuples, dicts), and the collector
    would traverse the growing heap several times meanwhile: about a third of the load time of
    the default taxonomy (measured: 0.31 s with it, 0.21 s without). Reference counting still
    frees everything; collection resumes when the last concurrent builder is done (and only if
    it was enabled before the first one started).
    """
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()
