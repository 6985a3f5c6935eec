"""Typed errors of the retrieval package: callers map them to exit codes and HTTP statuses."""

from __future__ import annotations


class RetrievalError(Exception):
    """Base class of every error raised on purpose by ``retrieval``."""


class EmbedderError(RetrievalError):
    """An embedder cannot be loaded (missing model directory, bad configuration)."""


class ExampleError(RetrievalError, ValueError):
    """An example record is invalid (missing id or title, wrong types)."""


class IndexStateError(RetrievalError):
    """A published index generation cannot be used."""


class NoIndexError(IndexStateError, LookupError):
    """Nothing has been published under this directory yet."""


class IndexCorruptError(IndexStateError):
    """A generation's files are missing, truncated or fail their checksum: it is refused."""


class IndexMismatchError(IndexStateError):
    """A generation was built with another embedder, dimension or format: refused, because
    searching it with the wrong embedder would silently return nonsense neighbours."""


class StaleGenerationError(IndexStateError):
    """A publication based on one generation found another one current (published meanwhile,
    e.g. by another replica): nothing was written; reload the current one and apply again."""
