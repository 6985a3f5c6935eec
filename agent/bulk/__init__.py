"""Bulk tagging of catalog files: reading them (:mod:`agent.bulk.source`) and tagging them on
a Ray cluster (:mod:`agent.bulk.ray_engine`, optional extra ``tagsmith[ray]``). The CLI
(``tagsmith tag-file``) and the benchmarks use both; the single-process path lives in the CLI."""

from agent.bulk.source import BatchTagging, FilePlan, TaggingFactory, plan_file, read_products

__all__ = ["BatchTagging", "FilePlan", "TaggingFactory", "plan_file", "read_products"]
