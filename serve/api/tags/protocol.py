"""Request and response models of the tagging endpoints (the agent's contract, plus a flag)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from agent.contract import Product, TagResult


class TagResponse(TagResult):
    """The agent's output contract, plus whether the LLM could be used."""

    degraded: bool = Field(
        default=False,
        description="true when the LLM backend was unavailable and this is the retrieval-only "
        "answer (only with server.on_llm_unavailable=degrade; otherwise such requests get 503)",
    )


class BatchTagRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    products: list[Product] = Field(
        min_length=1, description="at most limits.max_batch_items products (default 64)"
    )


class BatchTagResponse(BaseModel):
    results: list[TagResponse] = Field(description="one per product, in input order")
    taxonomy_version: int = Field(description="the one taxonomy version every result used")
