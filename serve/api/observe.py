"""The outermost middleware: request id (``X-Request-ID``, echoed), metrics, one JSON log line.

A client-supplied ``X-Request-ID`` is kept when it is short and plain (so ids can be
followed across services), otherwise a fresh one is made. An exception nothing else
handled becomes the documented 500 error shape here, with the request id.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.api.errors import error_body
from serve.jsonlog import request_id_var

log = logging.getLogger("tagsmith.access")
_PLAIN_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = given.decode() if given is not None and _PLAIN_ID.match(given) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        status = 0
        started = False
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error")
            if started:
                raise
            status = 500
            body = error_body(500, "internal_error", "internal error: see the service log for this request id")
            await send_with_id({"type": "http.response.start", "status": 500, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            ]})
            await send_with_id({"type": "http.response.body", "body": body})
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            state = getattr(scope.get("app"), "state", None)
            metrics = getattr(getattr(state, "tagsmith", None), "metrics", None)
            if metrics is not None:
                metrics.http_requests.labels(scope["method"], template, str(status)).inc()
                metrics.http_latency.labels(scope["method"], template).observe(elapsed)
            principal = scope.get("state", {}).get("principal")
            log.info("request", extra={
                "method": scope["method"], "path": scope["path"], "route": template, "status": status,
                "duration_ms": round(elapsed * 1000.0, 2),
                "key_id": getattr(principal, "key_id", None),
            })
            request_id_var.reset(token)
