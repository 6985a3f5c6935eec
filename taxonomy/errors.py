"""Typed errors of the taxonomy package: callers map them to exit codes and HTTP statuses."""

from __future__ import annotations


class TaxonomyError(ValueError):
    """A taxonomy document is structurally invalid (duplicate ids, missing parent, cycle...)."""


class TaxonomyFormatError(TaxonomyError):
    """An import file cannot be read in the requested format."""


class EditRejected(ValueError):
    """An edit batch was refused; nothing of the batch was applied.

    ``code`` is a stable machine-readable reason (e.g. ``duplicate_id``, ``cycle``,
    ``node_deprecated``); ``index`` is the position of the offending edit in the batch.
    """

    def __init__(self, code: str, message: str, index: int | None = None) -> None:
        self.code = code
        self.message = message
        self.index = index
        where = f"edit #{index}: " if index is not None else ""
        super().__init__(f"{where}{message} [{code}]")


class StaleVersion(RuntimeError):
    """An edit was made against a version that is no longer current (HTTP 412)."""

    def __init__(self, expected: int, current: int) -> None:
        self.expected = expected
        self.current = current
        super().__init__(
            f"edit made against version {expected}, but the current version is {current}: "
            "reload and re-apply"
        )


class EmptyStore(LookupError):
    """The store holds no taxonomy yet: import one first."""


class UnknownVersion(LookupError):
    """A version number that the store does not hold."""

    def __init__(self, version: int) -> None:
        self.version = version
        super().__init__(f"no taxonomy version {version}")
