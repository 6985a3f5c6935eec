"""Catalog files for bulk tagging: JSONL or Parquet (by extension), one product per line /
row, each checked on its own so that a bad line never stops a run.

:func:`read_products` yields ``(line, Product or None, error or None)``: the line number
(JSONL, 1-based, blank lines counted) or the row number (Parquet, 1-based), streamed (JSONL a
line at a time, Parquet 4,096 rows at a time). A resumable run reads the file twice, holding
no product beyond the one being read: :func:`scan_file` validates and counts (ids already
done, repeated ids: 16 bytes per id, :mod:`agent.bulk.ids`), then :func:`stream_todo` yields
the products left to tag in file order and reports each bad line (a repeated id is one,
reported on every run, whether its first occurrence is done or not). :func:`plan_file` does
both into lists, for small files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent.bulk.ids import IdSet, digest_array, id_digest, repeated
from agent.contract import Product, TagResult

#: extensions read as Parquet (anything else is JSONL)
PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
NEEDS_ID = "each product needs a non-empty \"id\" (used to resume)"


class BatchTagging(Protocol):
    """What a bulk engine runs: a tagger for batches of products, closed at the end."""

    def tag_many(self, products: Sequence[Product]) -> list[TagResult]: ...

    def close(self) -> None: ...


#: builds the tagging once per worker (embedder, index, lexical model, LLM client); must be
#: picklable for the Ray engine (a module-level class or function)
TaggingFactory = Callable[[], BatchTagging]


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in PARQUET_SUFFIXES


def _validate(lineno: int, raw: Any) -> tuple[int, Product | None, str | None]:
    from pydantic import ValidationError

    if not isinstance(raw, dict) or not str(raw.get("id") or "").strip():
        return lineno, None, NEEDS_ID
    try:
        return lineno, Product.model_validate(raw), None
    except ValidationError as exc:
        first = exc.errors()[0]
        return lineno, None, f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


def _jsonl(path: Path) -> Iterator[tuple[int, Product | None, str | None]]:
    with path.open("rb") as fh:  # bytes: a line in another encoding is one bad line, not the end
        for lineno, data in enumerate(fh, 1):
            if not data.strip():
                continue
            try:
                raw = json.loads(data.decode("utf-8"))
            except UnicodeDecodeError:
                yield lineno, None, "not UTF-8"
                continue
            except json.JSONDecodeError as exc:
                yield lineno, None, f"invalid JSON: {exc.msg}"
                continue
            yield _validate(lineno, raw)


def _parquet(path: Path) -> Iterator[tuple[int, Product | None, str | None]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow comes with the ray extra
        raise ValueError("reading Parquet needs pyarrow: pip install 'tagsmith[ray]'") from exc
    row = 0
    try:
        reader = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow's errors (ArrowInvalid…) are not one class
        raise ValueError(f"{path}: not a readable Parquet file ({exc})") from exc
    for batch in reader.iter_batches(batch_size=4096):
        for record in batch.to_pylist():
            row += 1
            # a column absent from this row is null in Parquet: the field's default
            yield _validate(row, {k: v for k, v in record.items() if v is not None})


def read_products(path: Path) -> Iterator[tuple[int, Product | None, str | None]]:
    """(line or row number, Product or None, error message or None) for each product."""
    return _parquet(path) if is_parquet(path) else _jsonl(path)


@dataclass(frozen=True)
class FileScan:
    """The first pass over a catalog file (:func:`scan_file`): what a (resumed) run has to
    do, counted without holding any product."""

    products: int
    """distinct ids on valid lines"""
    done: int
    """of which already in the output"""
    bad: int
    """bad lines: invalid ones and repeats of an id"""
    repeated: frozenset[bytes] = frozenset()
    """the digests (:func:`agent.bulk.ids.id_digest`) of the ids on more than one valid line"""

    @property
    def todo(self) -> int:
        return self.products - self.done


class InputChangedError(ValueError):
    """The file read by the second pass is not the one the first pass counted."""


def scan_file(path: Path, done: IdSet) -> FileScan:
    """Pass 1: validate every line and count, keeping only 16 bytes per valid line (its id's
    digest) and, at the end, the digests of the repeated ids. ValueError on an unreadable
    Parquet file."""
    invalid = 0

    def ids() -> Iterator[str]:
        nonlocal invalid
        for _, product, problem in read_products(path):
            if problem is not None or product is None:
                invalid += 1
            else:
                yield str(product.id)

    distinct, twice, repeats = repeated(digest_array(ids()))
    return FileScan(products=len(distinct), done=distinct.count_in(done), bad=invalid + repeats, repeated=twice)


def stream_todo(
    path: Path, done: IdSet, scan: FileScan, on_bad: Callable[[dict[str, Any]], None],
) -> Iterator[Product]:
    """Pass 2: the products left to tag, in file order, one at a time; each bad line goes to
    ``on_bad`` (``{"line", "error"}``, in file order) as it is met. A repeated id's first valid
    line is the product, the later ones bad lines (reported on every run, whether the first is
    done or not). Raises :class:`InputChangedError` when the file no longer matches ``scan``."""
    first_line: dict[bytes, int] = {}  # only the repeated ids: a handful
    todo = 0
    for lineno, product, problem in read_products(path):
        if problem is not None or product is None:
            on_bad({"line": lineno, "error": problem})
            continue
        digest = id_digest(str(product.id))
        if digest in scan.repeated:
            if digest in first_line:
                on_bad({"line": lineno, "error": f"duplicate id {product.id!r} (first on line {first_line[digest]})"})
                continue
            first_line[digest] = lineno
        if done.has_digest(digest):
            continue
        todo += 1
        if todo > scan.todo:
            raise InputChangedError(f"{path} changed during the run (more products than counted): re-run to resume")
        yield product
    if todo != scan.todo:
        raise InputChangedError(f"{path} changed during the run ({todo:,} products left to tag, "
                                f"{scan.todo:,} counted): re-run to resume")


@dataclass
class FilePlan:
    """Both passes with their results in memory: for small files and tests (``tag-file``
    streams them instead)."""

    todo: list[Product] = field(default_factory=list)
    """the products left to tag, in file order"""
    bad: list[dict[str, Any]] = field(default_factory=list)
    """``{"line", "error"}`` per bad line"""
    done: int = 0
    """products of the file already in the output"""

    @property
    def total(self) -> int:
        return len(self.todo) + self.done


def plan_file(path: Path, done: Iterable[str]) -> FilePlan:
    """What a (resumed) run of ``path`` has to do, given the ids already written."""
    done_set = done if isinstance(done, IdSet) else IdSet.of(done)
    scan = scan_file(path, done_set)
    plan = FilePlan(done=scan.done)
    plan.todo = list(stream_todo(path, done_set, scan, plan.bad.append))
    return plan
