"""Build the heavy runtime objects (taxonomy store, embedder, example index, LLM, tagger)
from :class:`Settings`: the one place where settings become constructor arguments."""

from __future__ import annotations

from dataclasses import dataclass

from agent.llm import LLMBackend
from agent.tagger import Tagger, TaggerConfig
from retrieval import (
    CachedEmbedder,
    CandidateGenerator,
    EmbeddingCache,
    ExampleIndex,
    IndexStore,
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

    def close(self) -> None:
        if self.llm is not None:
            self.llm.close()
        self.store.close()


def embedder_from_settings(settings: Settings) -> CachedEmbedder:
    inner = SentenceTransformerEmbedder(
        settings.embedder.model,
        batch_size=settings.embedder.batch_size,
        device=settings.embedder.device,
    )
    return CachedEmbedder(inner, EmbeddingCache(settings.data_dir / "cache" / "embeddings"))


def load_or_build_index(settings: Settings, embedder: CachedEmbedder, snap: Snapshot) -> ExampleIndex:
    """The published index; on first start, the shipped examples, built and published."""
    store = IndexStore(settings.data_dir / "index")
    try:
        index, _ = store.load(embedder=embedder.name, dim=embedder.dim)
        return index
    except NoIndexError:
        index = build_index(embedder, packaged_examples())
        store.publish(index, embedder=embedder.name, taxonomy_version=snap.version)
        return index


def build_runtime(
    settings: Settings, *, pipeline: str | None = None, llm: LLMBackend | None = None
) -> Runtime:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = TaxonomyStore(settings.taxonomy_db_url)
    snap = seed_default_taxonomy(store)
    embedder = embedder_from_settings(settings)
    index = load_or_build_index(settings, embedder, snap)
    cfg = TaggerConfig(
        pipeline=pipeline or settings.tagging.pipeline,  # type: ignore[arg-type]
        llm_weight=settings.tagging.llm_weight,
        review_threshold=settings.tagging.review_threshold,
        reask_budget=settings.tagging.reask_budget,
    )
    backend = llm
    if backend is None and cfg.pipeline != "knn":
        backend = backend_from_settings(settings)
    generator = CandidateGenerator(embedder, snap, index)
    return Runtime(store, embedder, index, backend, Tagger(generator, backend, config=cfg))
