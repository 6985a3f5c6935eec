"""The Python client of the tagsmith HTTP API: ``from serve.client import Client, AsyncClient``.

Typed with the service's own protocol models (``serve/api/*/protocol.py``); imports neither
FastAPI nor torch nor the models, and needs nothing beyond httpx and pydantic. Errors are the
typed exceptions of :mod:`serve.client.errors`; 429 and 503 are retried after the server's
Retry-After within :class:`RetryPolicy`'s bounds. The LangChain tool and retriever:
:mod:`serve.client.langchain` (the ``tagsmith[langchain]`` extra). Guide: ``docs/client.md``.
"""

from agent.contract import Product
from serve.api.jobs.protocol import Job, JobResultLine
from serve.api.tags.protocol import BatchTagResponse, TagResponse
from serve.client.aio import AsyncClient
from serve.client.errors import (
    APIError,
    BatchTooLarge,
    Conflict,
    Forbidden,
    NotFound,
    PreconditionRequired,
    RateLimited,
    RequestTimeout,
    RequestTooLarge,
    ReviewItemChanged,
    ServerError,
    StaleVersion,
    TagsmithError,
    TransportError,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from serve.client.retry import NO_RETRY, RetryPolicy
from serve.client.sync import Client

__all__ = [
    "NO_RETRY",
    "APIError",
    "AsyncClient",
    "BatchTagResponse",
    "BatchTooLarge",
    "Client",
    "Conflict",
    "Forbidden",
    "Job",
    "JobResultLine",
    "NotFound",
    "PreconditionRequired",
    "Product",
    "RateLimited",
    "RequestTimeout",
    "RequestTooLarge",
    "RetryPolicy",
    "ReviewItemChanged",
    "ServerError",
    "StaleVersion",
    "TagResponse",
    "TagsmithError",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
]
