"""Where index generations live: the one small interface behind :class:`retrieval.store.IndexStore`.

A backend stores a generation's files (blobs, the manifest among them) under a name it
assigns (``gen-000007``, numbers increasing), records which one is current together with
the sha256 of its manifest, and drops old ones. It knows nothing of what the files mean:
the store builds and verifies them (checksums, embedder, format). Two backends:

- :class:`retrieval.store.FileGenerations`: directories under ``<data_dir>/index`` (default;
  one machine, or several processes on one data directory);
- :class:`retrieval.generations_db.DatabaseGenerations`: rows of the shared database
  (``database.url``), so that every replica loads what any replica published.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Literal, Protocol


class _Any(enum.Enum):
    ANY = "any"


#: ``base`` of a publication that may replace whatever generation is current
ANY = _Any.ANY
AnyBase = Literal[_Any.ANY]


#: the file of every generation that describes (and checksums) the others
MANIFEST = "manifest.json"


def generation_name(number: int) -> str:
    return f"gen-{number:06d}"


class GenerationBackend(Protocol):
    def describe(self) -> str:
        """Where, for messages (never a password)."""
        ...

    def current(self) -> tuple[str, str] | None:
        """(name, manifest sha256) of the current generation; None before the first one."""
        ...

    def read(self, generation: str, name: str) -> bytes:
        """One file of a generation; FileNotFoundError when it (or the generation) is gone."""
        ...

    def generations(self) -> list[str]:
        """The generations kept, oldest first."""
        ...

    def close(self) -> None:
        """Release connections (nothing for a directory)."""
        ...

    def publish(
        self, build: Callable[[str], Mapping[str, bytes]], *, base: str | AnyBase | None = ANY, keep: int = 2
    ) -> str:
        """Atomically: name the next generation, store the files ``build(name)`` returns
        (``manifest.json`` among them) and make it current; then keep the newest ``keep``
        (the previous one always). One publisher at a time. ``base``: unless ANY, the
        generation the caller derived its files from; another one current raises
        :class:`retrieval.errors.StaleGenerationError` and nothing is stored. Returns the name."""
        ...
