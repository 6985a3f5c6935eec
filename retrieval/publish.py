"""Publishing an index generation: the one path every publication takes, so that every
generation carries a calibration fitted on its own pool (:mod:`retrieval.calibration`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from retrieval.calibration import DEFAULT_TARGET_PRECISION, Calibration, fit_calibration
from retrieval.embedder import Embedder
from retrieval.generations import ANY, AnyBase
from retrieval.index import ExampleIndex
from retrieval.lexical import LexicalClassifier
from retrieval.store import IndexStore, Manifest
from retrieval.taxonomy_search import TaxonomyIndex
from taxonomy import Snapshot

log = logging.getLogger("tagsmith.index")


def publish_index(
    store: IndexStore,
    index: ExampleIndex,
    *,
    embedder: Embedder,
    snapshot: Snapshot,
    lexical: LexicalClassifier | None,
    taxonomy_version: int | None = None,
    extra: Mapping[str, Any] | None = None,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    calibration: Calibration | None = None,
    taxonomy_index: TaxonomyIndex | None = None,
    base: str | AnyBase | None = ANY,
) -> tuple[Manifest, Calibration]:
    """Fit the calibration of ``index`` (unless one is given: a calibration carried over
    while a refit is pending) and publish both; returns the manifest and the calibration.
    ``base``: the generation ``index`` derives from (:meth:`IndexStore.publish`)."""
    if calibration is None:
        started = time.perf_counter()
        calibration = fit_calibration(
            embedder, snapshot, index, target_precision=target_precision, taxonomy_index=taxonomy_index
        )
        log.info("calibration fitted", extra={
            "examples": len(index), "method": calibration.method, "held_out": calibration.held_out,
            "temperature": calibration.temperature, "review_threshold": calibration.review_threshold,
            "ece": calibration.ece, "seconds": round(time.perf_counter() - started, 2),
        })
    manifest = store.publish(
        index, embedder=embedder.name, taxonomy_version=taxonomy_version, extra=extra,
        lexical=lexical, calibration=calibration, base=base,
    )
    return manifest, calibration
