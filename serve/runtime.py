"""Build the heavy runtime objects (taxonomy store, embedder, example index, LLM, tagger)
from :class:`Settings`: the one place where settings become constructor arguments."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Protocol

from agent.attributes import AttributeExtractor
from agent.contract import AttributeSelection
from agent.llm import LLMBackend
from agent.tagger import LLM_PIPELINES, Tagger, TaggerConfig
from retrieval import (
    CachedEmbedder,
    CandidateGenerator,
    Embedder,
    EmbeddingCache,
    ExampleIndex,
    HashingEmbedder,
    IndexStore,
    LexicalClassifier,
    NoIndexError,
    SentenceTransformerEmbedder,
    StaleGenerationError,
    build_index,
    packaged_examples,
)
from retrieval.calibration import Calibration
from retrieval.generations_db import DatabaseGenerations
from retrieval.onnx_runtime import fastest_runtime
from retrieval.prebuilt import PrebuiltVectors
from retrieval.publish import publish_index
from serve.backends import backend_from_settings
from serve.crosswalks import open_crosswalk_catalog
from serve.database import open_engine, safe_url
from serve.filemodes import private_data_dir
from serve.settings import Settings
from taxonomy import Snapshot, TaxonomyStore, seed_default_taxonomy

log = logging.getLogger("tagsmith.engine")
#: a fit on more labelled examples than this is shown as a start-up step (~0.05 s each)
EXTRACTOR_STEP_MIN = 50


@dataclass
class Runtime:
    store: TaxonomyStore
    embedder: CachedEmbedder
    index: ExampleIndex
    llm: LLMBackend | None
    tagger: Tagger
    lexical: LexicalClassifier | None = None
    calibration: Calibration | None = None

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
        self.store.close()


class StartupProgress(Protocol):
    """Where start-up work that takes a while is reported (the CLI draws it on stderr):
    ``step`` starts a step (and ends the previous one), ``advance`` counts within it,
    ``done`` ends it."""

    def step(self, description: str) -> None: ...

    def advance(self, done: int, total: int) -> None: ...

    def done(self) -> None: ...


@contextmanager
def _step(progress: StartupProgress | None, description: str, *, when: bool = True) -> Iterator[None]:
    if progress is None or not when:
        yield
        return
    progress.step(description)
    yield
    progress.done()


def inner_embedder_from_settings(settings: Settings) -> Embedder:
    if settings.embedder.backend == "hashing":
        return HashingEmbedder()
    emb = settings.embedder
    return SentenceTransformerEmbedder(
        emb.model,
        batch_size=emb.batch_size,
        device=emb.device,
        num_threads=emb.num_threads,
        quantize=emb.quantize,
        runtime=emb.runtime,  # onnx/openvino: exported once per model into ~/.cache/tagsmith/onnx
    )


def bulk_settings(settings: Settings) -> Settings:
    """``settings`` for bulk tagging: the embedder on ``embedder.bulk_runtime`` (``auto``: the
    fastest float32 runtime installed, see :func:`retrieval.onnx_runtime.fastest_runtime`).
    A float32 runtime makes the same vectors, so the published index is used as it is."""
    emb = settings.embedder
    if emb.backend != "sentence-transformers":
        return settings
    runtime = emb.bulk_runtime
    if runtime == "auto":
        runtime = fastest_runtime(emb.device)
    return settings.model_copy(update={"embedder": emb.model_copy(update={"runtime": runtime})})


def embedder_from_settings(settings: Settings) -> CachedEmbedder:
    """The configured embedder behind the data directory's cache, and behind that the
    vectors precomputed at install time (``tagsmith index prebuild``)."""
    return CachedEmbedder(
        inner_embedder_from_settings(settings),
        EmbeddingCache(settings.data_dir / "cache" / "embeddings"),
        prebuilt=PrebuiltVectors(),
    )


@contextmanager
def embedding_step(
    embedder: CachedEmbedder, progress: StartupProgress | None, description: str
) -> Iterator[None]:
    """While inside, texts the embedder must encode (cache and prebuilt vectors missed) are
    reported as ``description`` with counts; nothing is shown when everything is found."""
    if progress is None:
        yield
        return
    started = False

    def advance(done: int, total: int) -> None:
        nonlocal started
        if not started:
            progress.step(f"{description} ({total:,} not cached yet)")
            started = True
        progress.advance(done, total)

    previous, embedder.progress = embedder.progress, advance
    try:
        yield
    finally:
        embedder.progress = previous
    if started:
        progress.done()


def open_index_store(settings: Settings) -> IndexStore:
    """Where the index generations live: ``<data_dir>/index`` (files), or, with
    ``database.url`` set, the database every replica shares (close it after use)."""
    url = settings.database.url_value
    if not url:
        return IndexStore(settings.data_dir / "index")
    return IndexStore(backend=DatabaseGenerations(open_engine(url), f"the database ({safe_url(url)})"))


def adopt_local_index(settings: Settings, store: IndexStore) -> bool:
    """A data directory moving to ``database.url``: when the database has no generation yet
    and ``<data_dir>/index`` has one, publish that one into the database (as it is). True
    when it did."""
    local = IndexStore(settings.data_dir / "index")
    if store.current() is not None or local.current() is None:
        return False
    manifest = store.copy_from(local)
    log.info("index generation moved into the database", extra={"generation": manifest.generation,
                                                                 "examples": manifest.count})
    return True


def load_or_build_index(
    settings: Settings,
    embedder: CachedEmbedder,
    snap: Snapshot,
    progress: StartupProgress | None = None,
    store: IndexStore | None = None,
) -> tuple[ExampleIndex, LexicalClassifier | None, Calibration | None]:
    """The published index, its lexical classifier and its calibration; on first start, the
    shipped examples, built, trained, calibrated and published. A generation published
    without a classifier or a calibration (by an older tagsmith), or with a calibration
    carried over from its predecessor whose refit never ran (the process stopped first),
    gets them now and is republished, so the default pipeline always has both signals and
    a calibration of its own pool. ``store``: where generations live (default:
    :func:`open_index_store`'s, closed after use)."""
    if store is None:
        with closing(open_index_store(settings)) as own:
            return load_or_build_index(settings, embedder, snap, progress, own)
    if settings.database.url_value and store.current() is None:
        adopt_local_index(settings, store)
    target = settings.tagging.target_precision
    try:
        index, lexical, manifest = store.load_bundle(embedder=embedder.name, dim=embedder.dim)
    except NoIndexError:
        examples = packaged_examples()
        with embedding_step(embedder, progress, "embedding the packaged example products"):
            index = build_index(embedder, examples)
        first = f"training the lexical classifier on {len(index)} examples (first start)"
        with _step(progress, first, when=LexicalClassifier.trainable(examples)):
            lexical = LexicalClassifier.fit(list(index))
        try:
            _, first_calibration = publish_index(
                store, index, embedder=embedder, snapshot=snap, lexical=lexical,
                taxonomy_version=snap.version, target_precision=target, base=None,
            )
        except StaleGenerationError:  # another replica's first start published first: use its
            index, lexical, manifest = store.load_bundle(embedder=embedder.name, dim=embedder.dim)
            return index, lexical, manifest.calibration
        return index, lexical, first_calibration
    calibration = manifest.calibration
    retrain = lexical is None and len(index) > 0
    if retrain:
        upgrade = f"training the lexical classifier on {len(index)} examples"
        with _step(progress, upgrade, when=LexicalClassifier.trainable(list(index))):
            lexical = LexicalClassifier.fit(list(index))
        retrain = lexical is not None
    if retrain or calibration is None or calibration.refit_pending:
        try:
            with _step(progress, f"calibrating confidences on held-out examples of the {len(index):,}"):
                _, calibration = publish_index(
                    store, index, embedder=embedder, snapshot=snap, lexical=lexical,
                    taxonomy_version=manifest.taxonomy_version, extra=manifest.extra, target_precision=target,
                    base=manifest.generation,
                )
        except StaleGenerationError:  # another replica published meanwhile: use that one
            index, lexical, manifest = store.load_bundle(embedder=embedder.name, dim=embedder.dim)
            calibration = manifest.calibration
    return index, lexical, calibration


def labelled_examples(index: ExampleIndex) -> int:
    """Examples carrying attribute values: what fitting the extractor costs grows with them."""
    return sum(1 for ex in index if ex.attribute_values)


def fit_extractor(
    snapshot: Snapshot, index: ExampleIndex, progress: StartupProgress | None = None
) -> AttributeExtractor:
    """The attribute extractor for this taxonomy version and these examples: the taxonomy's
    value names, and what the examples' attribute values teach. ~0.1 s for the default
    taxonomy and the shipped examples (which carry no attribute values); ~0.05 s more per
    labelled example on 2 cores (docs/benchmarks.md)."""
    labelled = labelled_examples(index)
    what = f"fitting the attribute extractor on {labelled:,} examples with attribute values"
    started = time.perf_counter()
    with _step(progress, what, when=labelled >= EXTRACTOR_STEP_MIN):
        extractor = AttributeExtractor.fit(snapshot, list(index))
    log.info("attribute extractor fitted", extra={
        "taxonomy_version": snapshot.version, "examples": len(index), "labelled": labelled,
        "seconds": round(time.perf_counter() - started, 3),
    })
    return extractor


def build_runtime(
    settings: Settings,
    *,
    pipeline: str | None = None,
    llm: LLMBackend | None = None,
    progress: StartupProgress | None = None,
    attributes: AttributeSelection | None = None,
    eager_extractor: bool = True,
    index_store: IndexStore | None = None,
) -> Runtime:
    """``progress`` hears about the steps that do real work (a first start's seeding,
    embedding, training); a start that finds everything in place reports nothing.

    ``attributes``: the selection used when a call does not say (default: the settings').
    ``eager_extractor``: fit the attribute extractor now (the service: never inside a
    request) rather than on the first product that asks for attributes.
    ``index_store``: where index generations live (default: :func:`open_index_store`'s)."""
    private_data_dir(settings.data_dir)
    store = TaxonomyStore(settings.taxonomy_db_url)
    first_start = store.version == 0
    with _step(progress, "importing the packaged taxonomy into the store (first start)", when=first_start):
        snap = seed_default_taxonomy(store)
    if first_start:
        _install_packaged_crosswalk(settings, store, progress)
    embedder = embedder_from_settings(settings)
    index, lexical, calibration = load_or_build_index(settings, embedder, snap, progress, index_store)
    cfg = TaggerConfig(
        pipeline=pipeline or settings.tagging.pipeline,  # type: ignore[arg-type]
        llm_weight=settings.tagging.llm_weight,
        review_threshold=settings.tagging.review_threshold,
        target_precision=settings.tagging.target_precision,
        reask_budget=settings.tagging.reask_budget,
        attributes=settings.tagging.attributes if attributes is None else attributes,
        attribute_review_threshold=settings.tagging.attribute_review_threshold,
    )
    backend = llm
    if backend is None and cfg.pipeline in LLM_PIPELINES:
        backend = backend_from_settings(settings)
    with embedding_step(embedder, progress, "embedding the taxonomy's node texts for search"):
        generator = CandidateGenerator(embedder, snap, index, lexical=lexical, calibration=calibration)
    extractor = fit_extractor(snap, index, progress) if eager_extractor else None
    tagger = Tagger(generator, backend, config=cfg, extractor=extractor)
    return Runtime(store, embedder, index, backend, tagger, lexical, calibration)


def _install_packaged_crosswalk(settings: Settings, store: TaxonomyStore, progress: StartupProgress | None) -> None:
    """A first start on the packaged Shopify taxonomy also gets Shopify's published mapping
    to the Google Product Taxonomy as crosswalk ``google`` (~1 s), so ``?crosswalk=google``
    works out of the box. Best effort: a failure leaves tagging as it is (and is logged)."""
    try:
        with _step(progress, "importing the packaged Shopify → Google crosswalk (first start)", when=True), \
                open_crosswalk_catalog(settings, store) as catalog:
            if "google" not in catalog.names():
                catalog.install_packaged("google", author="tagsmith (first start)")
    except Exception:
        log.exception("the packaged crosswalk could not be installed: tagsmith crosswalk import google --packaged")
