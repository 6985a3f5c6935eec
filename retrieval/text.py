"""Product → text for the embedder, with a deliberate truncation policy.

The embedder only sees its first ``max_seq_length`` tokens (256 word pieces for MiniLM),
and encoding cost grows with length. So the text is built in priority order — title,
breadcrumb, attributes, then description — and cut on characters *before* tokenising:
the title and the category hints always survive, and the description (long, noisy,
boilerplate-heavy in real feeds) only fills what is left of the budget. Whitespace and
control characters are collapsed so that trivially different inputs hash (and cache) alike.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Protocol

#: ~4 characters per word piece: 600 chars ≈ 150 tokens, which covers MiniLM's useful window
#: while keeping encoding cost bounded (measured in docs/benchmarks.md).
DEFAULT_MAX_CHARS = 600
#: the description never pushes the title out, but a 2 KB title is still cut
MAX_TITLE_CHARS = 300
MAX_BREADCRUMB_CHARS = 150
MAX_ATTRIBUTES_CHARS = 200

_SPACE = re.compile(r"\s+")
# breadcrumbs that carry no information (seen in real shop data)
_EMPTY_BREADCRUMBS = frozenset({"", "product", "products", "all products", "home", "shop", "default category"})


def clean(text: str) -> str:
    """Drop control/format characters and collapse whitespace."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(" " if unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} else ch for ch in text)
    return _SPACE.sub(" ", text).strip()


def _cut(text: str, limit: int) -> str:
    """Cut at a word boundary when one is near, so no half word reaches the tokenizer."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = head.rfind(" ")
    return head[:space] if space > limit * 0.8 else head


def product_text(
    title: str,
    description: str | None = None,
    *,
    attributes: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    breadcrumb: str | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> str:
    """The text embedded for one product: ``title. [breadcrumb.] [k: v; ...] description``."""
    parts = [_cut(clean(title), MAX_TITLE_CHARS)]
    if breadcrumb:
        crumb = clean(breadcrumb)
        if crumb.lower() not in _EMPTY_BREADCRUMBS:
            parts.append(_cut(crumb, MAX_BREADCRUMB_CHARS))
    if attributes:
        items = attributes.items() if isinstance(attributes, Mapping) else attributes
        attr_text = "; ".join(f"{clean(k)}: {clean(v)}" for k, v in items if clean(v))
        if attr_text:
            parts.append(_cut(attr_text, MAX_ATTRIBUTES_CHARS))
    head = ". ".join(p for p in parts if p)
    if description:
        room = max_chars - len(head) - 1
        desc = clean(description)
        # a description that merely repeats the title adds tokens but no information
        if desc.lower().startswith(parts[0].lower()):
            desc = desc[len(parts[0]) :].lstrip(" .:-")
        if room > 20 and desc:
            head = f"{head}. {_cut(desc, room)}" if head else _cut(desc, room)
    return _cut(head, max_chars)


class ProductLike(Protocol):
    """What retrieval reads of a product: ``agent.contract.Product`` and ``Example`` both fit."""

    @property
    def title(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def attributes(self) -> Mapping[str, str]: ...

    @property
    def category_text(self) -> str: ...


def text_of(product: ProductLike | str, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """The embedder text of a product, or of a free-text query (cleaned and cut alike)."""
    if isinstance(product, str):
        return _cut(clean(product), max_chars)
    return product_text(
        product.title,
        product.description,
        attributes=product.attributes,
        breadcrumb=product.category_text,
        max_chars=max_chars,
    )
