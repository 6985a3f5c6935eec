"""Build the heavy runtime objects (taxonomy store, embedder, example index, LLM, tagger)
from :class:`Settings`: the one place where settings become constructor arguments."""

from __future__ import annotations

from dataclasses import dataclass

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
    build_index,
    packaged_examples,
)
from serve.backends import backend_from_settings
from serve.settings import Settings
from taxonomy import Snapshot, TaxonomyStore, seed_default_taxonomy


@dataclass
class Runtime:
    store: TaxonomyStore
    embedder: CachedEmbedder
    index: ExampleIndex
    llm: LLMBackend | None
    tagger: Tagger
    lexical: LexicalClassifier | None = None

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
        self.store.close()


def embedder_from_settings(settings: Settings) -> CachedEmbedder:
    inner: Embedder
    if settings.embedder.backend == "hashing":
        inner = HashingEmbedder()
    else:
        inner = SentenceTransformerEmbedder(
            settings.embedder.model,
            batch_size=settings.embedder.batch_size,
            device=settings.embedder.device,
        )
    return CachedEmbedder(inner, EmbeddingCache(settings.data_dir / "cache" / "embeddings"))


def load_or_build_index(
    settings: Settings, embedder: CachedEmbedder, snap: Snapshot
) -> tuple[ExampleIndex, LexicalClassifier | None]:
    """The published index and its lexical classifier; on first start, the shipped
    examples, built, trained and published. A generation published without a classifier
    (by an older tagsmith) gets one trained
    now and republished, so the default pipeline always has both signals."""
    store = IndexStore(settings.data_dir / "index")
    try:
        index, lexical, manifest = store.load_bundle(embedder=embedder.name, dim=embedder.dim)
    except NoIndexError:
        index = build_index(embedder, packaged_examples())
        lexical = LexicalClassifier.fit(list(index))
        store.publish(index, embedder=embedder.name, taxonomy_version=snap.version, lexical=lexical)
        return index, lexical
    if lexical is None and len(index):
        lexical = LexicalClassifier.fit(list(index))
        if lexical is not None:
            store.publish(
                index, embedder=embedder.name, taxonomy_version=manifest.taxonomy_version,
                extra=manifest.extra, lexical=lexical,
            )
    return index, lexical


def build_runtime(
    settings: Settings, *, pipeline: str | None = None, llm: LLMBackend | None = None
) -> Runtime:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = TaxonomyStore(settings.taxonomy_db_url)
    snap = seed_default_taxonomy(store)
    embedder = embedder_from_settings(settings)
    index, lexical = load_or_build_index(settings, embedder, snap)
    cfg = TaggerConfig(
        pipeline=pipeline or settings.tagging.pipeline,  # type: ignore[arg-type]
        llm_weight=settings.tagging.llm_weight,
        review_threshold=settings.tagging.review_threshold,
        reask_budget=settings.tagging.reask_budget,
    )
    backend = llm
    if backend is None and cfg.pipeline in LLM_PIPELINES:
        backend = backend_from_settings(settings)
    generator = CandidateGenerator(embedder, snap, index, lexical=lexical)
    tagger = Tagger(generator, backend, config=cfg)
    return Runtime(store, embedder, index, backend, tagger, lexical)
