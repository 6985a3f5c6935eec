"""What the service tags with, swapped atomically: the current tagger over one taxonomy
snapshot, example index and lexical classifier; and the ways a new one is made.

- **State**: an immutable :class:`TaggingView` (tagger, index, lexical classifier, index
  generation). A published taxonomy edit or index generation builds the next view aside
  and swaps one reference; a batch reads the reference once, so in-flight requests finish
  on the snapshot they started with.
- **Index updates** (feedback, deletions) copy the index, change the copy, publish it as a
  new generation and swap: readers never see an index being modified. Small indexes get
  their lexical classifier retrained within the update, big ones in the background.
  The calibration (temperatures, review threshold, far-from-examples similarity:
  :mod:`retrieval.calibration`) is refitted on the held-out part of every generation's
  pool; an update publishes with its predecessor's calibration marked ``refit_pending``
  and a debounced background refit publishes the next generation with its own (a
  cross-fitted refit costs several classifier trainings: too slow inside a request).
- **Refresh** picks up taxonomy versions and index generations other processes published.
- **The attribute extractor** is fitted on the view's taxonomy version and examples when the
  view is built, never inside a request: within the update when few examples carry
  attribute values (:data:`EXTRACTOR_SYNC_MAX`), else in the background, debounced, while
  the view serves with the previous extractor (its answers are still validated against the
  view's own snapshot: a stale extractor may miss values, never return off-schema ones).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from agent.attributes import AttributeExtractor
from agent.contract import AttributeSelection, Product, TagResult
from agent.llm import LLMBackend
from agent.tagger import LLM_PIPELINES, Tagger
from retrieval import (
    CachedEmbedder,
    CandidateGenerator,
    ExampleIndex,
    IndexStore,
    LexicalClassifier,
    StaleGenerationError,
)
from retrieval.calibration import DEFAULT_TARGET_PRECISION, Calibration
from retrieval.publish import publish_index
from serve.metrics import Metrics
from serve.runtime import fit_extractor, labelled_examples
from taxonomy import Snapshot, TaxonomyStore

log = logging.getLogger("tagsmith.engine")
T = TypeVar("T")

#: up to this many examples the lexical classifier is retrained within the index update
#: (~3 s per 1,000 on 2 cores); bigger indexes retrain in the background, debounced
LEXICAL_SYNC_MAX = 1000
LEXICAL_RETRAIN_DELAY_S = 10.0
#: up to this many examples with attribute values the attribute extractor is refitted within
#: the view change (~0.06-0.1 s each on 2 busy cores once the ranker trains, plus ~0.1-0.4 s
#: for the default taxonomy's values; docs/benchmarks.md); with more, in the background,
#: debounced, the previous extractor serving meanwhile
EXTRACTOR_SYNC_MAX = 20
EXTRACTOR_REFIT_DELAY_S = 10.0
#: an index update retried this often when other replicas keep publishing under it
PUBLISH_ATTEMPTS = 20


@dataclass(frozen=True)
class TaggingView:
    """One consistent state to tag against."""

    tagger: Tagger
    index: ExampleIndex
    lexical: LexicalClassifier | None
    index_generation: str | None
    extractor_stale: bool = False
    """The tagger's attribute extractor was fitted on an earlier taxonomy version or index
    (a refit is scheduled)."""

    @property
    def snapshot(self) -> Snapshot:
        return self.tagger.snapshot


class TaggingState:
    def __init__(
        self,
        tagger: Tagger,
        index: ExampleIndex,
        *,
        taxonomy_store: TaxonomyStore,
        index_store: IndexStore,
        embedder: CachedEmbedder,
        metrics: Metrics,
        generation: str | None = None,
        target_precision: float = DEFAULT_TARGET_PRECISION,
    ) -> None:
        """``target_precision``: what publications fit the review threshold for.

        ``generation``: the index generation current *before* ``index`` was loaded (read
        after, a publication in between would go unnoticed; read before, it is reloaded once)."""
        self.taxonomy_store = taxonomy_store
        self.index_store = index_store
        self.embedder = embedder
        self.metrics = metrics
        self.target_precision = target_precision
        lexical = tagger.generator.lexical  # the classifier the tagger uses
        _ = tagger.extractor  # fitted now (if the runtime did not), not by the first request
        self._view = TaggingView(tagger, index, lexical, generation)
        self._swap_lock = threading.Lock()  # one view builder at a time
        self._index_lock = threading.Lock()  # one index writer at a time
        self._retrain_timer: threading.Timer | None = None
        self._retrain_lexical = False
        self._refit_timer: threading.Timer | None = None
        self._timer_lock = threading.Lock()
        self._observe(self._view)

    # ---- reading -----------------------------------------------------------------------
    @property
    def current(self) -> TaggingView:
        return self._view

    @property
    def snapshot(self) -> Snapshot:
        return self._view.snapshot

    @property
    def calibration(self) -> Calibration | None:
        """The calibration of the index generation in use."""
        return self._view.tagger.generator.calibration

    @property
    def pipeline(self) -> str:
        return self._view.tagger.config.pipeline

    @property
    def llm(self) -> LLMBackend | None:
        """The LLM the pipeline asks; None when it asks none."""
        tagger = self._view.tagger
        return tagger.llm if tagger.config.pipeline in LLM_PIPELINES else None

    def tag(
        self, products: Sequence[Product], attributes: AttributeSelection | None = None
    ) -> list[TagResult]:
        """Tag in the calling thread, all against one view. Each result says itself whether
        it was answered without the LLM because the backend was down (evidence.llm.degraded).
        ``attributes``: which attributes to tag (None: the configured default)."""
        return self._view.tagger.tag_many(products, attributes=attributes)

    # ---- swapping ----------------------------------------------------------------------
    def _observe(self, view: TaggingView) -> None:
        self.metrics.taxonomy_version.set(view.snapshot.version)
        self.metrics.index_examples.set(len(view.index))

    def _swap(self, build: Callable[[TaggingView], TaggingView | None]) -> TaggingView:
        with self._swap_lock:
            new = build(self._view)
            if new is not None:
                self._view = new  # the one reference readers take
                self._observe(new)
            return self._view

    def use_snapshot(self, snapshot: Snapshot) -> TaggingView:
        """Tag new requests against ``snapshot`` (ignored when not newer than the current)."""

        def build(cur: TaggingView) -> TaggingView | None:
            if snapshot.version <= cur.snapshot.version:
                return None
            extractor, stale = self._extractor_for(cur, snapshot, cur.index)
            generator = cur.tagger.generator.with_snapshot(snapshot)
            return replace(cur, tagger=_retarget(cur.tagger, generator, extractor), extractor_stale=stale)

        before = self._view
        view = self._swap(build)
        if view is not before:
            log.info("taxonomy version in use", extra={"taxonomy_version": view.snapshot.version})
        return view

    def use_index(
        self, index: ExampleIndex, lexical: LexicalClassifier | None, generation: str | None,
        calibration: Calibration | None = None,
    ) -> TaggingView:
        def build(cur: TaggingView) -> TaggingView:
            old = cur.tagger.generator
            generator = CandidateGenerator(
                old.embedder, old.snapshot, index, config=old.config,
                taxonomy_index=old.taxonomy_index, lexical=lexical, calibration=calibration,
            )
            extractor, stale = self._extractor_for(cur, old.snapshot, index)
            return TaggingView(_retarget(cur.tagger, generator, extractor), index, lexical, generation, stale)

        return self._swap(build)

    # ---- the attribute extractor -------------------------------------------------------
    def _extractor_for(
        self, cur: TaggingView, snapshot: Snapshot, index: ExampleIndex
    ) -> tuple[AttributeExtractor, bool]:
        """The extractor of a view over ``snapshot`` and ``index`` being built from ``cur``,
        and whether it is stale: the current one when it was fitted on the same (an index
        republished with a retrained classifier), a new one fitted now when that is quick,
        else the current one, stale, until the background refit replaces it."""
        extractor = cur.tagger.extractor
        if cur.snapshot is snapshot and cur.index is index and not cur.extractor_stale:
            return extractor, False
        if labelled_examples(index) <= EXTRACTOR_SYNC_MAX:
            try:
                return self._fit(snapshot, index), False
            except Exception:  # never fail an edit or an index update over it: keep the old one
                log.exception("attribute extractor fit failed; the previous one keeps serving")
                return extractor, False
        self._schedule_refit()
        return extractor, True

    def _fit(self, snapshot: Snapshot, index: ExampleIndex) -> AttributeExtractor:
        with self.metrics.extractor_fit.time():
            return fit_extractor(snapshot, index)

    def _schedule_refit(self) -> None:
        with self._timer_lock:
            if self._refit_timer is not None:
                self._refit_timer.cancel()  # debounce: one fit after a burst of changes
            timer = threading.Timer(EXTRACTOR_REFIT_DELAY_S, self._refit)
            timer.daemon = True
            self._refit_timer = timer
            timer.start()

    def _refit(self) -> None:
        """Fit the extractor of the current view (if stale) aside, then swap it in unless the
        view changed meanwhile (that change scheduled its own refit)."""
        view = self._view
        if not view.extractor_stale:
            return
        try:
            extractor = self._fit(view.snapshot, view.index)
        except Exception:  # the stale extractor keeps serving; the next change retries
            log.exception("attribute extractor refit failed")
            return

        def build(cur: TaggingView) -> TaggingView | None:
            if cur.snapshot is not view.snapshot or cur.index is not view.index or not cur.extractor_stale:
                return None
            tagger = _retarget(cur.tagger, cur.tagger.generator, extractor)
            return replace(cur, tagger=tagger, extractor_stale=False)

        if self._swap(build).tagger.extractor is extractor:
            log.info("attribute extractor refitted", extra={
                "taxonomy_version": view.snapshot.version, "examples": len(view.index)})

    # ---- publishing --------------------------------------------------------------------
    def update_index(self, change: Callable[[ExampleIndex], T]) -> tuple[T, TaggingView]:
        """Copy the index, apply ``change`` to the copy, publish it, swap it in; the lexical
        classifier (when big) and the calibration are refitted in the background. When
        another process or replica published a generation since ours was loaded, that one
        is loaded and ``change`` applied to it instead (up to :data:`PUBLISH_ATTEMPTS`
        times): no replica's update is lost to another's."""
        with self._index_lock:
            for attempt in range(PUBLISH_ATTEMPTS):
                cur = self._view
                index = ExampleIndex.from_files(cur.index.to_files())
                out = change(index)
                lexical = cur.lexical
                retrain_later = False
                if len(index) <= LEXICAL_SYNC_MAX:
                    lexical = LexicalClassifier.fit(list(index))
                else:
                    retrain_later = True
                previous = cur.tagger.generator.calibration
                carried = replace(previous, refit_pending=True) if previous is not None else None
                try:
                    view = self._publish(index, lexical, carried, base=cur.index_generation)
                    break
                except StaleGenerationError:
                    if attempt == PUBLISH_ATTEMPTS - 1:
                        raise
                    log.info("index changed elsewhere: loading it, then applying the update again")
                    self._reload_index()
        self._schedule_retrain(lexical=retrain_later)
        return out, view

    def _publish(
        self, index: ExampleIndex, lexical: LexicalClassifier | None, calibration: Calibration | None = None,
        *, base: str | None,
    ) -> TaggingView:
        """Publish ``index`` (derived from generation ``base``) with ``calibration``, or one
        fitted now when None."""
        generator = self._view.tagger.generator
        manifest, fitted = publish_index(
            self.index_store, index, embedder=self.embedder, snapshot=generator.snapshot,
            lexical=lexical, taxonomy_version=self._view.snapshot.version,
            target_precision=self.target_precision, calibration=calibration,
            taxonomy_index=generator.taxonomy_index, base=base,
        )
        return self.use_index(index, lexical, manifest.generation, fitted)

    def _schedule_retrain(self, *, lexical: bool) -> None:
        with self._timer_lock:
            self._retrain_lexical = lexical or self._retrain_lexical
            if self._retrain_timer is not None:
                self._retrain_timer.cancel()  # debounce: one refit after a burst of feedback
            timer = threading.Timer(LEXICAL_RETRAIN_DELAY_S, self._retrain)
            timer.daemon = True
            self._retrain_timer = timer
            timer.start()

    def _retrain(self) -> None:
        """Retrain the lexical classifier (when the update left it to this) and refit the
        calibration of the current index, then publish both as the next generation."""
        with self._timer_lock:
            retrain_lexical, self._retrain_lexical = self._retrain_lexical, False
        view = self._view
        index = view.index
        try:
            lexical = LexicalClassifier.fit(list(index)) if retrain_lexical else view.lexical
            with self._index_lock:
                if self._view.index is not index:  # changed meanwhile: that change reschedules
                    with self._timer_lock:
                        self._retrain_lexical = self._retrain_lexical or retrain_lexical
                    return
                self._publish(index, lexical, base=view.index_generation)
        except StaleGenerationError:  # another replica published meanwhile: its publisher refits that one
            log.info("index changed elsewhere before the refit was published; refit dropped")
            return
        except Exception:  # the previous classifier and calibration keep serving
            log.exception("background retrain / recalibration failed")
            return
        calibration = self.calibration
        log.info("index refitted", extra={
            "examples": len(index), "lexical_retrained": retrain_lexical,
            "calibration": calibration.method if calibration is not None else None,
        })

    def refresh(self) -> None:
        """Pick up a taxonomy version or index generation published by another process (or,
        on a shared database, another replica)."""
        store = self.taxonomy_store
        if store.refresh() > self._view.snapshot.version:
            self.use_snapshot(store.current())
        pointer = self.index_store.current()
        if pointer is not None and pointer[0] != self._view.index_generation:
            with self._index_lock:
                self._reload_index()

    def _reload_index(self) -> None:
        """Load the current generation and tag with it (the index lock held)."""
        embedder = self.embedder
        index, lexical, manifest = self.index_store.load_bundle(embedder=embedder.name, dim=embedder.dim)
        if manifest.generation != self._view.index_generation:
            self.use_index(index, lexical, manifest.generation, manifest.calibration)
            log.info("index generation in use", extra={"generation": manifest.generation})

    def stop(self) -> None:
        with self._timer_lock:
            if self._retrain_timer is not None:
                self._retrain_timer.cancel()
            if self._refit_timer is not None:
                self._refit_timer.cancel()


def _retarget(old: Tagger, generator: CandidateGenerator, extractor: AttributeExtractor) -> Tagger:
    """The same tagger (LLM, config, prompts, validator) over another generator and extractor."""
    return Tagger(
        generator, old.llm, config=old.config, prompts=old.prompts, validator=old.validator,
        extractor=extractor,
    )
