"""What the synchronous and the asynchronous client share besides the calls: headers, the
retry policy and the batch limit learnt from the server."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from serve.api.tags.protocol import MAX_BATCH_ITEMS_HEADER
from serve.client.batching import DEFAULT_MAX_BATCH_ITEMS, spans
from serve.client.errors import BatchTooLarge
from serve.client.retry import RetryPolicy


class ClientBase:
    def __init__(self, retry: RetryPolicy | None) -> None:
        self.retry = retry or RetryPolicy()
        #: products per ``POST /v1/tags:batch``: the server's limit once an answer said it
        self.max_batch_items = DEFAULT_MAX_BATCH_ITEMS

    @staticmethod
    def _headers(api_key: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {"User-Agent": "tagsmith-client", **(extra or {})}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        return headers

    def _observe(self, response: httpx.Response) -> None:
        limit = response.headers.get(MAX_BATCH_ITEMS_HEADER, "")
        if limit.isdigit() and int(limit) >= 1:
            self.max_batch_items = int(limit)

    def _batch_size(self, wanted: int | None) -> int:
        if wanted is not None and wanted < 1:
            raise ValueError(f"batch_size must be at least 1, not {wanted}")
        return wanted or self.max_batch_items

    @staticmethod
    def _smaller_batches(exc: BatchTooLarge, n: int) -> list[tuple[int, int]]:
        """A batch refused as too large, split by the limit its answer gave (re-raised when
        it gave none, or one that would not make the batches smaller)."""
        limit = exc.max_batch_items
        if limit is None or limit < 1 or limit >= n:
            raise exc
        return spans(n, limit)
