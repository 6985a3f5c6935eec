"""Models of the feedback and example endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.contract import NOT_BLANK, Product

AttributeId = Annotated[str, Field(min_length=1, max_length=512)]
AttributeValue = Annotated[str, Field(min_length=1, max_length=1000, pattern=NOT_BLANK)]
AttributeValues = dict[
    AttributeId, AttributeValue | Annotated[list[AttributeValue], Field(min_length=1, max_length=50)]
]


class FeedbackRequest(BaseModel):
    """A reviewer's verdict on a product's tags: the product becomes a tagged example."""

    model_config = ConfigDict(extra="forbid")
    product: Product = Field(description="with `id` to update that example later; without, a new id is made")
    verdict: Literal["accept", "correct"] = Field(
        description="accept: the tags returned were right; correct: these are the right tags"
    )
    tags: list[str] = Field(min_length=1, max_length=10, description="active leaf ids of the current taxonomy")
    attribute_values: AttributeValues | None = Field(
        default=None, max_length=100,
        description="the product's right attribute values, for the first tag's category: attribute "
        "(its id, or its name among the category's attributes, case-insensitive) -> a value or a "
        "list of values (closed attributes: value ids, or value names, case-insensitive; open "
        "ones: the normalized text, e.g. \"32\" for a size written \"32x32\"). Stored by id. "
        "Checked against the taxonomy (422 invalid_attribute_values: an attribute the category "
        "does not have, a value it does not allow, several values for a single-valued attribute). Stored on the example: the attribute extractor learns them at once. Omitted: "
        "an existing example with this id keeps the values that still apply; {}: none",
    )
    note: str | None = Field(default=None, max_length=2000)


class FeedbackOut(BaseModel):
    id: str
    example_id: str = Field(description="the example now in the index")
    verdict: Literal["accept", "correct"]
    tags: list[str]
    attribute_values: dict[str, list[str]] = Field(
        default_factory=dict, description="the attribute values stored on the example (value ids for closed attributes)",
    )
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
    attribute_values: dict[str, list[str]] = Field(
        default_factory=dict, description="its attribute tags: attribute id -> value ids (closed) or values (open)",
    )


class ExamplePage(BaseModel):
    items: list[ExampleOut]
    total: int
    offset: int
    limit: int
    index_generation: str | None
