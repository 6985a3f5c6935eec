"""The agent's input and output contract, shared by the service, the CLI ``--json`` and the evals."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

PipelineName = Literal["hybrid", "knn", "zero-shot", "rag", "cascade"]

#: the one definition of a blank character: exactly the ones Python's ``str.isspace`` knows
#: (which include U+0085 and U+001C-U+001F, unlike the ``\s`` of JSON Schema's ECMA regexes)
BLANK = "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + (
    "\u2028\u2029\u202f\u205f\u3000"
)
#: "contains a non-blank character", spelled with explicit code points (no ``\s``) so that
#: the JSON Schema (ECMA), Python's ``re`` and pydantic's Rust regex read it identically
NOT_BLANK = r"[^\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


class Product(BaseModel):
    """One product to tag. Text fields are untrusted: they are data, never instructions.

    Lengths are checked on the values as sent (what the schema says); blank characters
    (:data:`BLANK`) at either end are stripped afterwards.
    """

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, max_length=256, description="client id, echoed back")
    title: str = Field(
        min_length=1, max_length=1000, pattern=NOT_BLANK,
        description="must contain a non-blank character (blank: the code points of the pattern)",
    )
    description: str = Field(default="", max_length=20000)
    attributes: dict[str, str] = Field(
        default_factory=dict, max_length=100, description="optional key/values (brand, color…)"
    )
    category_text: str = Field(
        default="", max_length=1000, description="the shop's own breadcrumb, if any"
    )

    @field_validator("id", "title", "description", "category_text")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        return None if value is None else value.strip(BLANK)

    @field_validator("attributes")
    @classmethod
    def _strip_attributes(cls, value: dict[str, str]) -> dict[str, str]:
        return {k.strip(BLANK): v.strip(BLANK) for k, v in value.items()}


#: which attributes a caller wants: none, all of the category's, or only the named ones
#: (attribute ids or names)
AttributeSelection = Literal["off", "on"] | list[str]
AttributeSource = Literal["text", "neighbors", "llm"]


class AttributeEvidence(BaseModel):
    # "from" is a Python keyword: the field is ``source`` in code and "from" on the wire,
    # whatever dumps it (FastAPI, the CLI, jobs)
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    span: tuple[int, int] | None = Field(
        default=None,
        description="[start, end) character offsets of the value as written, in `field` of the input; "
        "null when the value was not read from the text (e.g. a neighbours' vote)",
    )
    field: str | None = Field(
        default=None,
        description="the input field the span is in: title, description, category_text, or "
        "attributes.<key> for a key/value the caller sent",
    )
    source: AttributeSource = Field(alias="from", description="where the value came from")
    text: str | None = Field(default=None, description="the value as written in the input, when read from it")


class AttributeValueTag(BaseModel):
    value_id: str | None = Field(description="the taxonomy value id (closed attributes); null for open ones")
    value: str = Field(description="the value's name (closed) or the normalized value (open)")
    confidence: float = Field(ge=0.0, le=1.0)
    evidence: AttributeEvidence


class AttributeTag(BaseModel):
    attribute: str = Field(description="the taxonomy attribute id")
    name: str
    values: list[AttributeValueTag] = Field(min_length=1)


class Tag(BaseModel):
    id: str
    name: str
    path: list[str] = Field(description="names from the root to this node")
    confidence: float = Field(ge=0.0, le=1.0)


class Neighbor(BaseModel):
    id: str
    score: float
    tags: list[str]


class LLMEvidence(BaseModel):
    attempts: int = Field(ge=0, description="LLM calls made (0 when the pipeline skipped it)")
    fallback_used: bool = Field(description="true when the answer is the retrieval fallback")
    rejections: list[str] = Field(default_factory=list, description="why earlier answers were rejected")
    model: str | None = None
    prompt_tokens: int = Field(default=0, ge=0, description="LLM prompt tokens over all attempts")
    completion_tokens: int = Field(default=0, ge=0, description="LLM generated tokens over all attempts")
    degraded: bool = Field(
        default=False,
        description="true when the LLM backend was unavailable (down, unreachable, timing out: not a bad "
        "answer) and this is the retrieval-only answer",
    )
    degraded_reason: str | None = Field(default=None, description="why the LLM was unavailable (its error)")


class CandidateEvidence(BaseModel):
    """A category the tagger weighed, with its calibrated probability (best first)."""

    id: str
    name: str
    probability: float = Field(ge=0.0, le=1.0)


ReviewReason = Literal[
    "low_confidence",  # top confidence below the review threshold
    "no_tag",  # nothing valid to return
    "llm_fallback",  # the LLM's answer was refused and retrieval's was used
    "attribute_low_confidence",  # an attribute value below the attribute review threshold
    "unreadable_text",  # the embedder reads the text as mostly unknown tokens / an uncovered script
    "far_from_examples",  # the nearest tagged example is far away
    "thin_vote",  # the winning category rests on a single example
]


class Evidence(BaseModel):
    neighbors: list[Neighbor]
    llm: LLMEvidence
    candidates: list[CandidateEvidence] = Field(
        default_factory=list, description="the categories weighed, best first, with probabilities"
    )
    review_reasons: list[ReviewReason] = Field(
        default_factory=list, description="why needs_review is true (empty when it is false)"
    )


class Timings(BaseModel):
    retrieval: float
    llm: float
    validation: float
    total: float


class CrosswalkTag(BaseModel):
    id: str = Field(description="a node id of the second taxonomy")
    name: str
    path: list[str] = Field(description="names from the root to this node")


class CrosswalkTags(BaseModel):
    """The top tag in a second taxonomy, through a stored crosswalk (asked for per request)."""

    crosswalk: str = Field(description="the crosswalk's name")
    crosswalk_version: int
    taxonomy: str = Field(description="the second taxonomy's name, e.g. google")
    version: int = Field(description="the second taxonomy's version the ids were checked against")
    status: Literal["mapped", "unmapped", "ancestor"] = Field(
        description="mapped: the tag's own row; ancestor: no usable row of its own, these are its "
        "nearest mapped ancestor's (source_id); unmapped: no counterpart (tags empty)"
    )
    source_id: str | None = Field(description="the tag whose row was used (an ancestor for status=ancestor)")
    tags: list[CrosswalkTag] = Field(description="active nodes of the second taxonomy")
    reason: str | None = Field(default=None, description="why unmapped")


class TagResult(BaseModel):
    id: str | None = Field(default=None, description="the product id, when one was given")
    tags: list[Tag]
    needs_review: bool
    taxonomy_version: int
    pipeline: str
    evidence: Evidence
    timings_ms: Timings
    attributes: list[AttributeTag] = Field(
        default_factory=list,
        description="values of the chosen category's attributes (inherited ones included) found for "
        "this product; an attribute with no value found is left out",
    )
    crosswalk: CrosswalkTags | None = Field(
        default=None, exclude_if=lambda value: value is None,
        description="the top tag in a second taxonomy, when the request asked for a crosswalk "
        "(absent otherwise)",
    )
