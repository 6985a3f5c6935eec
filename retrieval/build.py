"""Embedding examples in chunks into an index (the CLI's ``index build`` and the benchmarks)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from retrieval.embedder import Embedder
from retrieval.examples import Example
from retrieval.index import ExampleIndex, IndexKind
from retrieval.text import DEFAULT_MAX_CHARS

#: examples per embedding call: with a CachedEmbedder each chunk is committed to the cache,
#: so an interrupted build resumes from the last finished chunk
CHUNK = 256


def add_examples(
    index: ExampleIndex,
    embedder: Embedder,
    examples: Sequence[Example],
    *,
    chunk: int = CHUNK,
    max_chars: int = DEFAULT_MAX_CHARS,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Embed and upsert ``examples``; ``progress(n)`` is called after each chunk of n."""
    if index.dim != embedder.dim:
        raise ValueError(f"index dimension {index.dim} != embedder dimension {embedder.dim}")
    for start in range(0, len(examples), chunk):
        batch = examples[start : start + chunk]
        index.upsert(batch, embedder.encode([ex.text(max_chars) for ex in batch]))
        if progress is not None:
            progress(len(batch))


def build_index(
    embedder: Embedder,
    examples: Sequence[Example],
    *,
    kind: IndexKind = "flat",
    chunk: int = CHUNK,
    max_chars: int = DEFAULT_MAX_CHARS,
    progress: Callable[[int], None] | None = None,
) -> ExampleIndex:
    index = ExampleIndex(embedder.dim, kind=kind)
    add_examples(index, embedder, examples, chunk=chunk, max_chars=max_chars, progress=progress)
    return index
