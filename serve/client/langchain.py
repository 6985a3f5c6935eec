"""LangChain integration (the ``tagsmith[langchain]`` extra: ``langchain-core`` only).

- :class:`TagProductTool`: a tool that tags one product. Its input schema is the service's
  :class:`~agent.contract.Product`, its output the :class:`~serve.api.tags.protocol.TagResponse`
  contract (as a JSON-ready dict, so that a model reads it in a ToolMessage).
- :class:`TaggedExamplesRetriever`: the tagged examples of the service's index whose id or text
  contains the query (``GET /v1/examples?q=``), as Documents with their tags in the metadata.

Both are Runnables: ``invoke``, ``batch``, ``ainvoke`` and LCEL chains (``tool | parser``).
Each takes a :class:`~serve.client.Client` and, for the async interfaces without a thread,
an :class:`~serve.client.AsyncClient`."""

from __future__ import annotations

from typing import Any

try:
    from langchain_core.callbacks import (
        AsyncCallbackManagerForRetrieverRun,
        AsyncCallbackManagerForToolRun,
        CallbackManagerForRetrieverRun,
        CallbackManagerForToolRun,
    )
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables import RunnableConfig
    from langchain_core.tools import ArgsSchema, BaseTool
except ImportError as exc:  # pragma: no cover - the extra is installed wherever the tests run
    raise ImportError(
        "serve.client.langchain needs langchain-core: pip install 'tagsmith[langchain]'"
    ) from exc
from pydantic import BaseModel, ConfigDict

from agent.contract import Product
from serve.api.feedback.protocol import ExampleOut
from serve.api.tags.protocol import TagResponse
from serve.client.aio import AsyncClient
from serve.client.calls import Attributes
from serve.client.sync import Client

TOOL_DESCRIPTION = (
    "Tag one e-commerce product with categories (nodes) of the shop's taxonomy and the "
    "category's attribute values. Input: the product's title (required), and if known its "
    "description, attributes (key/value) and the shop's own category breadcrumb. Output: tags "
    "(taxonomy node id, name, path, confidence), attribute values with their evidence, and "
    "needs_review when a person should check the answer."
)


class TagProductTool(BaseTool):
    """``TagProductTool(client=Client(url, key))``; ``attributes``: which of the category's
    attributes to tag (on, off, or ids / names; default: the server's setting)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str = "tag_product"
    description: str = TOOL_DESCRIPTION
    args_schema: ArgsSchema | None = Product
    client: Client | None = None
    async_client: AsyncClient | None = None
    attributes: Attributes = None

    def get_output_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        return TagResponse

    def _run(self, run_manager: CallbackManagerForToolRun | None = None, **fields: Any) -> dict[str, Any]:
        if self.client is None:
            raise ValueError("TagProductTool needs a client (Client) for invoke / batch")
        result = self.client.tag(Product.model_validate(fields), attributes=self.attributes)
        return result.model_dump(mode="json", by_alias=True)

    async def _arun(self, run_manager: AsyncCallbackManagerForToolRun | None = None, **fields: Any) -> dict[str, Any]:
        if self.async_client is None:  # the sync client, in a thread (BaseTool's default)
            out: dict[str, Any] = await super()._arun(**fields)
            return out
        result = await self.async_client.tag(Product.model_validate(fields), attributes=self.attributes)
        return result.model_dump(mode="json", by_alias=True)


def example_document(example: ExampleOut) -> Document:
    """An example as a Document: its title and description as the text; id, tags, attribute
    values, attributes and category text as metadata."""
    text = "\n".join(part for part in (example.title, example.description) if part)
    return Document(
        id=example.id, page_content=text,
        metadata={
            "id": example.id, "tags": list(example.tags), "attribute_values": dict(example.attribute_values),
            "attributes": dict(example.attributes), "category_text": example.category_text,
        },
    )


class TaggedExamplesRetriever(BaseRetriever):
    """``TaggedExamplesRetriever(client=Client(url, key), k=4)``: at most ``k`` examples whose id
    or text contains the query (case-insensitive), in index order. Needs a key with the
    ``feedback`` scope."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    client: Client | None = None
    async_client: AsyncClient | None = None
    k: int = 4

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        if self.client is None:
            raise ValueError("TaggedExamplesRetriever needs a client (Client) for invoke / batch")
        return [example_document(e) for e in self.client.examples(query, limit=self.k).items]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun,
    ) -> list[Document]:
        if self.async_client is None:
            return await super()._aget_relevant_documents(query, run_manager=run_manager)
        page = await self.async_client.examples(query, limit=self.k)
        return [example_document(e) for e in page.items]
