"""Catalog files for bulk tagging: JSONL or Parquet (by extension), one product per line /
row, each checked on its own so that a bad line never stops a run.

:func:`read_products` yields ``(line, Product or None, error or None)``: the line number
(JSONL, 1-based, blank lines counted) or the row number (Parquet, 1-based). :func:`plan_file`
adds what a resumable run needs: ids already done are skipped, a repeated id is a bad line
(reported on every run, whether its first occurrence is done or not), and the products left
to tag keep the file's order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

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


@dataclass
class FilePlan:
    todo: list[Product] = field(default_factory=list)
    """the products left to tag, in file order"""
    bad: list[dict[str, Any]] = field(default_factory=list)
    """``{"line", "error"}`` per bad line"""
    done: int = 0
    """products of the file already in the output"""

    @property
    def total(self) -> int:
        return len(self.todo) + self.done


def plan_file(path: Path, done: Collection[str]) -> FilePlan:
    """What a (resumed) run of ``path`` has to do, given the ids already written."""
    plan = FilePlan()
    first_line: dict[str | None, int] = {}
    for lineno, product, problem in read_products(path):
        if problem is not None or product is None:
            plan.bad.append({"line": lineno, "error": problem})
        elif product.id in first_line:
            plan.bad.append({"line": lineno, "error": f"duplicate id {product.id!r} (first on line {first_line[product.id]})"})
        else:
            first_line[product.id] = lineno
            if product.id in done:
                plan.done += 1
            else:
                plan.todo.append(product)
    return plan
