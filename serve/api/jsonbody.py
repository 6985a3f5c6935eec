"""The JSON depth limit on request bodies (:mod:`serve.jsonlimits`), before FastAPI parses them.

FastAPI parses a JSON body with ``json.loads`` in its own handler, with no hook for a
limit. This middleware wraps ``receive``: it keeps the body's chunks as they pass (the body
limit of :mod:`serve.api.limits` has already bounded them) and checks the whole body when
its last chunk arrives, so a body nested too deep is refused before anything parses it.
The refusal is raised inside FastAPI's body read, as the body limit's 413 is, and answered
by the app's handlers: 422 ``validation_error`` in the one error shape.

Job uploads are JSONL read line by line by their handler (:mod:`serve.jobs.ingest`),
which applies the same limit to each line: they are passed through untouched.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.api.errors import ErrorDetail, error_response
from serve.jsonlimits import JsonTooDeep, too_deep


class BodyTooDeep(HTTPException):
    """An HTTPException so that FastAPI's body reading re-raises it as it is (it turns any
    other exception into a 400); answered by its own handler, installed below."""

    def __init__(self, limit: int) -> None:
        super().__init__(422, str(JsonTooDeep(limit)))


def _is_json(scope: Scope) -> bool:
    # FastAPI parses a body as JSON when it has no content type or a JSON one
    value = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
    media = value.split(b";", 1)[0].strip().lower()
    return not media or media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


class JsonDepthMiddleware:
    def __init__(self, app: ASGIApp, *, max_depth: int, skip: Callable[[Scope], bool]) -> None:
        self.app = app
        self.max_depth = max_depth
        self.skip = skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS")
                or self.skip(scope) or not _is_json(scope)):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def checked_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                    chunks.clear()
                    if too_deep(body, self.max_depth):
                        raise BodyTooDeep(self.max_depth)
            return message

        await self.app(scope, checked_receive, send)


def install_json_depth_limit(app: FastAPI, max_depth: int, *, skip: Callable[[Scope], bool]) -> None:
    """The middleware (add it innermost: inside the body limit) and its error handler."""

    async def on_too_deep(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BodyTooDeep)
        message = f"body: {exc.detail}; flatten the document"
        detail = ErrorDetail(loc=["body"], message=str(exc.detail), type="json_too_deep")
        return error_response(422, "validation_error", message, details=[detail])

    app.add_exception_handler(BodyTooDeep, on_too_deep)
    app.add_middleware(JsonDepthMiddleware, max_depth=max_depth, skip=skip)
