"""Request and response models of the tagging endpoints (the agent's contract, plus a flag)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from agent.contract import Product, TagResult
from serve.api.errors import ERRORS
from serve.attribute_selection import MAX_SELECTED, SELECTION_HELP, AttributeName
from taxonomy.crosswalk import NAME_RE, StoreName

#: ``?attributes=``: on, off, or attribute ids / names (repeat the parameter for several)
AttributesQuery = Annotated[
    list[AttributeName] | None,
    Query(
        max_length=MAX_SELECTED, description=SELECTION_HELP,
        openapi_examples={
            "all": {"summary": "all of the category's attributes", "value": ["on"]},
            "none": {"summary": "the category only", "value": ["off"]},
            "named": {"summary": "only these (ids or names)", "value": ["Color", "Size"]},
        },
    ),
]

CROSSWALK_HELP = (
    "also give the top tag in a second taxonomy through this stored crosswalk (e.g. google: "
    "GET /v1/crosswalks lists them); the result gains `crosswalk`"
)
#: ``?crosswalk=``: the name of a stored crosswalk
CrosswalkQuery = Annotated[
    str | None, Query(min_length=1, max_length=64, pattern=NAME_RE.pattern, description=CROSSWALK_HELP)
]
#: ``?crosswalk_fallback=``
FallbackQuery = Annotated[bool, Query(
    description="with a crosswalk: a tag without a usable row of its own gets its nearest mapped "
    "ancestor's counterpart (status `ancestor`); false: `unmapped`",
)]

#: the 422 of an operation that takes ``?attributes=``
ATTRIBUTES_422: dict[int | str, dict[str, Any]] = {422: {
    **ERRORS[422],
    "description": "invalid request: field, length or batch-size limits (details say where); "
    "`unknown_attributes`: none of the names in `?attributes=` is an attribute (id or name) of "
    "the taxonomy in use; `unknown_crosswalk`: `crosswalk` names no stored crosswalk (or one "
    "whose taxonomies are not imported)",
}}


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
    crosswalk: StoreName | None = Field(default=None, description=CROSSWALK_HELP + " (as `?crosswalk=`; this one wins when both are sent)")


class BatchTagResponse(BaseModel):
    results: list[TagResponse] = Field(description="one per product, in input order")
    taxonomy_version: int = Field(description="the one taxonomy version every result used")
