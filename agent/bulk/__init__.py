"""Bulk tagging of catalog files: reading them (:mod:`agent.bulk.source`, two streamed passes,
the ids kept compact by :mod:`agent.bulk.ids`) and tagging them on a Ray cluster
(:mod:`agent.bulk.ray_engine`, optional extra ``tagsmith[ray]``). The CLI (``tagsmith
tag-file``) and the benchmarks use both; the single-process path lives in the CLI."""

from agent.bulk.ids import IdSet
from agent.bulk.source import (
    BatchTagging,
    FilePlan,
    FileScan,
    InputChangedError,
    TaggingFactory,
    plan_file,
    read_products,
    scan_file,
    stream_todo,
)

__all__ = ["BatchTagging", "FilePlan", "FileScan", "IdSet", "InputChangedError", "TaggingFactory",
           "plan_file", "read_products", "scan_file", "stream_todo"]
