"""Reproducible benchmark scripts: ``python -m evals.benchmarks.<name>``."""
