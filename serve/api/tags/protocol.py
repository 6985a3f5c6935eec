"""Request and response models of the tagging endpoints (the agent's contract, plus a flag).

Free of FastAPI: the Python client (:mod:`serve.client`) imports them; the query parameters
are declared in :mod:`serve.api.tags.params`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from agent.contract import Product, TagResult
from taxonomy.crosswalk import StoreName

#: on every ``POST /v1/tags:batch`` answer (its 422 ``batch_too_large`` too): limits.max_batch_items,
#: so that a client splits large inputs into batches the server takes
MAX_BATCH_ITEMS_HEADER = "X-Max-Batch-Items"

CROSSWALK_HELP = (
    "also give the top tag in a second taxonomy through this stored crosswalk (e.g. google: "
    "GET /v1/crosswalks lists them); the result gains `crosswalk`"
)

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
