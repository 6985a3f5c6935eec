"""Models of the feedback and example endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.contract import Product


class FeedbackRequest(BaseModel):
    """A reviewer's verdict on a product's tags: the product becomes a tagged example."""

    model_config = ConfigDict(extra="forbid")
    product: Product = Field(description="with `id` to update that example later; without, a new id is made")
    verdict: Literal["accept", "correct"] = Field(
        description="accept: the tags returned were right; correct: these are the right tags"
    )
    tags: list[str] = Field(min_length=1, max_length=10, description="active leaf ids of the current taxonomy")
    note: str | None = Field(default=None, max_length=2000)


class FeedbackOut(BaseModel):
    id: str
    example_id: str = Field(description="the example now in the index")
    verdict: Literal["accept", "correct"]
    tags: list[str]
    reviewer: str = Field(description="the API key id that sent it")
    taxonomy_version: int
    index_generation: str | None = Field(description="the index generation that includes it")
    created_at: datetime
    note: str | None


class FeedbackList(BaseModel):
    items: list[FeedbackOut]
    total: int
    offset: int
    limit: int


class ExampleOut(BaseModel):
    id: str
    title: str
    description: str
    tags: list[str]
    attributes: dict[str, str]
    category_text: str


class ExamplePage(BaseModel):
    items: list[ExampleOut]
    total: int
    offset: int
    limit: int
    index_generation: str | None
