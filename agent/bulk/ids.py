"""A compact set of product ids for bulk runs: the ids already written (resume) and the
duplicates of an input file, for catalogs of millions of products.

Each id is kept as its 16-byte BLAKE2b digest in one sorted NumPy array: **16 bytes per id**
(a Python ``set`` of the id strings costs ~100–150 bytes per id: ~1.2 GB for 10M ids, against
160 MB here). Membership is a binary search. Two different ids share a digest with
probability ~n²/2¹²⁹ (~1e-25 for 10M ids): negligible next to a disk error, so the set is
treated as exact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

DIGEST_BYTES = 16
_DTYPE = f"S{DIGEST_BYTES}"
#: ids hashed into one array before it joins the others (bounds the Python objects alive)
_CHUNK = 1 << 16


def id_digest(product_id: str) -> bytes:
    """The 16-byte digest standing for ``product_id``."""
    return hashlib.blake2b(product_id.encode("utf-8", "surrogatepass"), digest_size=DIGEST_BYTES).digest()


def digest_array(ids: Iterable[str]) -> npt.NDArray[np.bytes_]:
    """The digests of ``ids`` (in their order, repeats kept), hashed a chunk at a time."""
    parts: list[npt.NDArray[np.bytes_]] = []
    chunk: list[bytes] = []
    for product_id in ids:
        chunk.append(id_digest(product_id))
        if len(chunk) == _CHUNK:
            parts.append(np.array(chunk, dtype=_DTYPE))
            chunk = []
    if chunk:
        parts.append(np.array(chunk, dtype=_DTYPE))
    return np.concatenate(parts) if parts else np.empty(0, dtype=_DTYPE)


class IdSet:
    """An immutable set of ids as a sorted array of their digests."""

    def __init__(self, digests: npt.NDArray[np.bytes_], *, sorted_unique: bool = False) -> None:
        self._digests = digests if sorted_unique else np.unique(digests)  # sorted, each once

    @classmethod
    def of(cls, ids: Iterable[str]) -> IdSet:
        """The set of ``ids`` (streamed: only their digests are kept)."""
        return cls(digest_array(ids))

    def __len__(self) -> int:
        return int(self._digests.size)

    @property
    def nbytes(self) -> int:
        """The memory the set holds: 16 bytes per id."""
        return int(self._digests.nbytes)

    def has_digest(self, digest: bytes) -> bool:
        if not self._digests.size:
            return False
        at = int(np.searchsorted(self._digests, np.bytes_(digest)))
        return at < self._digests.size and bytes(self._digests[at]).ljust(DIGEST_BYTES, b"\0") == digest

    def __contains__(self, product_id: object) -> bool:
        return isinstance(product_id, str) and self.has_digest(id_digest(product_id))

    def count_in(self, other: IdSet) -> int:
        """How many of this set's ids are in ``other``."""
        return int(np.isin(self._digests, other._digests, assume_unique=True).sum())


def repeated(digests: npt.NDArray[np.bytes_]) -> tuple[IdSet, frozenset[bytes], int]:
    """For the digests of an input's ids in file order: (the distinct ids, the digests seen
    more than once, how many occurrences are repeats). Sorts a copy: 16 bytes per id, twice,
    while it runs."""
    ordered = np.sort(digests)
    same = ordered[1:] == ordered[:-1]
    twice = frozenset(bytes(d).ljust(DIGEST_BYTES, b"\0") for d in np.unique(ordered[1:][same]))
    distinct = ordered[np.concatenate(([True], ~same))] if ordered.size else ordered
    return IdSet(distinct, sorted_unique=True), twice, int(same.sum())
