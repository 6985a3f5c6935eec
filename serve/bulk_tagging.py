"""The tagging a bulk engine's worker builds from settings (``tagsmith tag-file --engine ray``):
a picklable factory, so each Ray actor loads the runtime (embedder, index, lexical model,
LLM client) once, exactly as the single-process path does (:func:`serve.runtime.build_runtime`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.contract import AttributeSelection, Product, TagResult
from serve.runtime import Runtime, build_runtime
from serve.settings import Settings


class RuntimeTagging:
    """:class:`agent.bulk.BatchTagging` over a :class:`Runtime`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def tag_many(self, products: Sequence[Product]) -> list[TagResult]:
        return self.runtime.tagger.tag_many(products)

    def close(self) -> None:
        self.runtime.close()


@dataclass(frozen=True)
class RuntimeTaggingFactory:
    """Called once in each worker process (the settings travel pickled with it)."""

    settings: Settings
    pipeline: str | None = None
    attributes: AttributeSelection | None = None
    eager_extractor: bool = True

    def __call__(self) -> RuntimeTagging:
        return RuntimeTagging(build_runtime(
            self.settings, pipeline=self.pipeline, attributes=self.attributes,
            eager_extractor=self.eager_extractor,
        ))
