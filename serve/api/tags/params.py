"""The query parameters of the tagging endpoints (and jobs), declared for FastAPI."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

from serve.api.errors import ERRORS
from serve.api.tags.protocol import CROSSWALK_HELP
from serve.attribute_selection import MAX_SELECTED, SELECTION_HELP, AttributeName
from taxonomy.crosswalk import NAME_RE

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
