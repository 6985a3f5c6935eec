"""Attribute tagging evals: dataset, scorer (WDC-PAVE), solvers, runner, report."""
