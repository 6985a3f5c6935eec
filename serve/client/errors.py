"""The service's one error shape (:class:`serve.api.error_protocol.ErrorResponse`) as typed
exceptions: one class per status (and per code where a caller acts on it), each carrying the
code, message, request id, details and the Retry-After the server sent."""

from __future__ import annotations

import json
from typing import Any

import httpx
from pydantic import ValidationError

from serve.api.error_protocol import ErrorDetail, ErrorResponse
from serve.api.tags.protocol import MAX_BATCH_ITEMS_HEADER
from serve.client.retry import parse_retry_after


class TagsmithError(Exception):
    """Anything the client raises about the service (transport failures included)."""


class TransportError(TagsmithError):
    """The service could not be reached, or the connection broke (after the retries allowed)."""


class APIError(TagsmithError):
    """An error answer of the service: ``status``, the stable ``code``, the ``message``."""

    def __init__(
        self, status: int, code: str, message: str, *, request_id: str | None = None,
        details: list[ErrorDetail] | None = None, retry_after: float | None = None,
        headers: httpx.Headers | None = None, current: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.details = details or []
        self.retry_after = retry_after
        self.headers = headers or httpx.Headers()
        self.current = current


class Unauthorized(APIError):
    """401: no key, a wrong or a revoked one."""


class Forbidden(APIError):
    """403: the key lacks the scope."""


class NotFound(APIError):
    """404."""


class RequestTimeout(APIError):
    """408: the request did not arrive in time."""


class Conflict(APIError):
    """409: the resource's state does not allow this (a review item ``claimed``, ``already_decided``…)."""


class ReviewItemChanged(Conflict):
    """409 ``changed``: the review item changed since the revision sent; ``item`` is it now."""

    @property
    def item(self) -> dict[str, Any]:
        return self.current or {}


class StaleVersion(APIError):
    """412: the taxonomy version named (If-Match) is not the current one; ``current_version`` is."""

    @property
    def current_version(self) -> int | None:
        etag = self.headers.get("etag", "").removeprefix("W/").strip('"')
        return int(etag) if etag.isdigit() else None


class RequestTooLarge(APIError):
    """413."""


class ValidationFailed(APIError):
    """422: invalid input; ``details`` say where."""


class BatchTooLarge(ValidationFailed):
    """422 ``batch_too_large``; ``max_batch_items``: the server's limit, when it says."""

    @property
    def max_batch_items(self) -> int | None:
        value = self.headers.get(MAX_BATCH_ITEMS_HEADER, "")
        return int(value) if value.isdigit() else None


class PreconditionRequired(APIError):
    """428: the edit needs If-Match."""


class RateLimited(APIError):
    """429 after the retries allowed; ``retry_after``: seconds the server asked to wait."""


class Unavailable(APIError):
    """503 (not ready, overloaded, uploads busy, LLM or database down) after the retries allowed."""


class ServerError(APIError):
    """Any other 5xx (a bug in the service: its log has the request id)."""


_BY_STATUS: dict[int, type[APIError]] = {
    401: Unauthorized, 403: Forbidden, 404: NotFound, 408: RequestTimeout, 409: Conflict,
    412: StaleVersion, 413: RequestTooLarge, 422: ValidationFailed, 428: PreconditionRequired,
    429: RateLimited, 503: Unavailable,
}
_BY_CODE: dict[tuple[int, str], type[APIError]] = {
    (409, "changed"): ReviewItemChanged, (422, "batch_too_large"): BatchTooLarge,
}


def error_from_response(response: httpx.Response) -> APIError:
    """The typed exception of an error answer (the service's shape; anything else, e.g. a
    proxy's HTML page, keeps its status and a short excerpt as the message)."""
    status = response.status_code
    try:
        info = ErrorResponse.model_validate(json.loads(response.content)).error
        code, message, request_id = info.code, info.message, info.request_id
        details, current = info.details, info.current
    except (ValueError, ValidationError):
        code = "http_error"
        message = response.text[:300] or response.reason_phrase
        request_id, details, current = response.headers.get("x-request-id"), [], None
    cls = _BY_CODE.get((status, code)) or _BY_STATUS.get(status) or (ServerError if status >= 500 else APIError)
    return cls(
        status, code, message, request_id=request_id, details=details, current=current,
        retry_after=parse_retry_after(response.headers.get("retry-after")), headers=response.headers,
    )
