"""The one error shape of the API, the exception that carries it, and the handlers.

Every error response, whatever raised it (a service, request validation, the router's
404/405, a middleware's 401/413/429, an unexpected bug), has this body::

    {"error": {"status": 422, "code": "validation_error", "message": "…",
               "request_id": "…", "details": [{"loc": ["body", "title"], "message": "…"}]}}
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

# the models live in a module free of FastAPI (the Python client reads them); re-exported here
from serve.api.error_protocol import ErrorDetail as ErrorDetail
from serve.api.error_protocol import ErrorInfo as ErrorInfo
from serve.api.error_protocol import ErrorResponse as ErrorResponse
from serve.database import is_unavailable
from serve.jsonlog import request_id_var

log = logging.getLogger("tagsmith.api")


class ApiError(Exception):
    """Raised by services and routers; mapped to :class:`ErrorResponse`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[ErrorDetail] | None = None,
        headers: dict[str, str] | None = None,
        current: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.current = current
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def error_body(
    status: int, code: str, message: str, details: list[ErrorDetail] | None = None,
    current: dict[str, Any] | None = None,
) -> bytes:
    info = ErrorInfo(
        status=status, code=code, message=message, request_id=request_id_var.get(),
        details=details or [], current=current,
    )
    # ``current`` only where there is one: every other error keeps its shape to the byte
    exclude: Any = None if current is not None else {"error": {"current"}}
    return ErrorResponse(error=info).model_dump_json(exclude=exclude).encode("utf-8")


def error_response(
    status: int, code: str, message: str, *, details: list[ErrorDetail] | None = None,
    headers: dict[str, str] | None = None, current: dict[str, Any] | None = None,
) -> JSONResponse:
    return JSONResponse(
        json.loads(error_body(status, code, message, details, current)), status_code=status, headers=headers
    )


_HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 408: "request_timeout", 409: "conflict", 412: "precondition_failed",
    413: "request_too_large", 415: "unsupported_media_type", 428: "precondition_required",
    429: "rate_limited", 503: "unavailable",
}


def _validation_details(exc: RequestValidationError) -> list[ErrorDetail]:
    out = []
    for err in exc.errors()[:50]:
        loc = [p if isinstance(p, int) else str(p) for p in err.get("loc", ())]
        out.append(ErrorDetail(loc=loc, message=str(err.get("msg", "invalid")), type=err.get("type")))
    return out


def _summary(details: list[ErrorDetail]) -> str:
    if not details:
        return "the request is invalid"
    first = details[0]
    where = ".".join(str(p) for p in first.loc if p != "body") or "body"
    more = f" (and {len(details) - 1} more problem(s))" if len(details) > 1 else ""
    return f"{where}: {first.message}{more}"


#: the methods a 405's ``Allow`` may list (the ones routes can declare)
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this request's path (RFC 9110 ``Allow``).

    The router answers 405 with the methods of the first route whose path matched only, but
    one path is often served by several routes (``GET`` and ``POST /v1/jobs``); so each method
    is tried against every route, through the routes' own (public) matching."""
    routes = request.app.router.routes
    return [
        method for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    ]


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(
            exc.status, exc.code, exc.message, details=exc.details, headers=exc.headers, current=exc.current,
        )

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        details = _validation_details(exc)
        return error_response(422, "validation_error", _summary(details), details=details)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:  # FastAPI: a body it could not decode (not UTF-8, …)
            return error_response(422, "validation_error", "the request body could not be read: send UTF-8 JSON")
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return error_response(exc.status_code, code, message, headers=headers)

    async def on_database_error(request: Request, exc: Exception) -> JSONResponse:
        if is_unavailable(exc):
            return database_unavailable(exc)
        return await on_unexpected(request, exc)

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error", "internal error: see the service log for this request id")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(OperationalError, on_database_error)
    app.add_exception_handler(Exception, on_unexpected)


#: what a client is told to wait while the database is unreachable (connections are checked
#: before use and a new one is tried on every request: the service recovers by itself)
DATABASE_RETRY_AFTER_S = 5.0
DATABASE_DOWN = "the database is unavailable; retry after the Retry-After seconds"


def database_unavailable(exc: Exception) -> JSONResponse:
    """503 + Retry-After for a database that cannot be reached or refuses for now (PostgreSQL
    down or restarting, SQLite busy beyond its timeout): the first line of the error logged,
    never the URL's password (the driver's messages do not carry it)."""
    log_database_unavailable(exc)
    return error_response(503, "unavailable", DATABASE_DOWN, headers=retry_after(DATABASE_RETRY_AFTER_S))


def log_database_unavailable(exc: Exception) -> None:
    log.warning("database unavailable: %s: %s", type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")


def _doc(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


#: documented error responses, by status (routers pick the ones they can return)
ERRORS: dict[int | str, dict[str, Any]] = {
    401: _doc("missing, malformed, unknown or revoked API key"),
    403: _doc("the key lacks the scope this operation needs"),
    404: _doc("no such resource"),
    408: _doc("the request body did not arrive in time (server.body_timeout_s between parts, server.body_min_rate_bytes_s on average)"),
    409: _doc("the resource is in a state that does not allow this"),
    412: _doc("If-Match names a version that is no longer current"),
    413: _doc("request body larger than the configured limit"),
    415: _doc("unsupported request content type"),
    422: _doc("invalid request: field, length or batch-size limits; details say where"),
    428: _doc("the If-Match header is required"),
    429: _doc("rate limit of this key exceeded; see Retry-After"),
    503: _doc("not ready yet, overloaded, or the LLM backend or the database is unavailable; see Retry-After"),
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented errors every authenticated operation can return, plus ``statuses``."""
    # 408: `tagsmith serve` answers it to any request whose body does not arrive in time
    wanted = {401, 403, 408, 413, 422, 429, *statuses}
    return {s: ERRORS[s] for s in sorted(wanted)}
