"""uvicorn's h11 protocol with deadlines for slow clients and a cap on connections.

uvicorn (0.54) has no request-header timeout: its keep-alive timer is cancelled by any
byte, so a client trickling a request head one byte at a time holds a connection (and a
file descriptor) forever. This protocol gives each connection a deadline per phase, which
bytes arriving do *not* extend:

* head: from the connection (or the end of the previous response) to a complete request
  head, ``server.header_timeout_s``. On expiry a half-received head is answered 408 (the
  one error shape) and the connection closed; an idle keep-alive connection is just closed.
* body: from the head to the body's end, the body must keep up ``server.body_min_rate_bytes_s``
  after ``server.body_timeout_s`` (bytes arriving extend the deadline only in proportion),
  plus a grace. While the app reads the body, :mod:`serve.body_timeout` answers 408 first;
  this is the backstop for a body nobody reads any more (the app answered early) and a
  client still trickling it.

It subclasses uvicorn's own h11 protocol, which uvicorn uses anyway here (httptools is
not installed), and leans on its internals (``conn``, ``on_response_complete``,
``connections``, ``tasks``): tests/serve/test_slow_clients.py breaks if they move.

The cap on connections (``server.max_connections``) is uvicorn's ``limit_concurrency``
check, but answered with the one error shape and Retry-After instead of uvicorn's text.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from serve.api.errors import error_body

log = logging.getLogger("tagsmith.service")

#: what a body-phase backstop waits beyond the body deadline: time for the app's own 408
BODY_GRACE_S = 5.0


def _raw_error(status: int, reason: str, code: str, message: str, extra: bytes = b"") -> bytes:
    """A complete HTTP/1.1 error response that closes the connection (written outside h11)."""
    body = error_body(status, code, message)
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n"
    ).encode() + extra + b"\r\n"
    return head + body


class TimeoutH11Protocol(H11Protocol):
    """Configured by :func:`protocol_class` (uvicorn instantiates the class itself)."""

    header_timeout_s = 10.0
    body_timeout_s = 30.0
    body_min_rate = 1024.0
    max_connections: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: str | None = None
        self._body_started = 0.0
        self._body_bytes = 0
        if self.max_connections is not None:
            self.limit_concurrency = None  # ours instead: the one error shape
            self.app = self._capped(self.app)

    # ---- deadlines ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        if self._phase == "body":
            self._body_bytes += len(data)
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _watch(self) -> None:
        """Arm the deadline of the phase the connection is in; keep a running one."""
        if self.transport.is_closing():
            self._cancel()
            return
        state = self.conn.their_state
        phase = "head" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
        if phase == self._phase:
            return  # bytes arrived, same phase: the deadline stands
        self._cancel()
        self._phase = phase
        if phase == "body":
            self._body_started, self._body_bytes = self.loop.time(), 0
        if phase is not None:
            seconds = self.header_timeout_s if phase == "head" else self._body_due() - self.loop.time()
            self._deadline = self.loop.call_later(seconds, self._expired, phase)

    def _body_due(self) -> float:
        """When the body phase must end, given the bytes it has brought so far."""
        allowed = self.body_timeout_s + self._body_bytes / self.body_min_rate + BODY_GRACE_S
        return self._body_started + allowed

    def _expired(self, phase: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if phase == "body" and self.loop.time() < self._body_due():
            # bytes arrived since the timer was armed: re-arm for what they earned, no more
            self._deadline = self.loop.call_later(self._body_due() - self.loop.time(), self._expired, phase)
            return
        partial_head = phase == "head" and bool(self.conn.trailing_data[0])
        if partial_head and self.conn.our_state is h11.IDLE:
            self.transport.write(_raw_error(
                408, "Request Timeout", "request_timeout",
                f"the request head did not arrive within {self.header_timeout_s:g} s "
                "(server.header_timeout_s)",
            ))
        # debug: a slow-client flood must not become a log flood
        log.debug("closing a connection from %s: %s deadline passed", self.client, phase)
        self.transport.close()

    # ---- connection cap -------------------------------------------------------------
    def _capped(self, app: Any) -> Any:
        cap = self.max_connections
        assert cap is not None

        async def capped(scope: Any, receive: Any, send: Any) -> None:
            # this request's own task is counted in self.tasks already: hence ">"
            if scope["type"] == "http" and (len(self.connections) > cap or len(self.tasks) > cap):
                log.warning("over server.max_connections (%d): answering 503", cap)
                body = error_body(503, "unavailable", f"the server is at its connection limit ({cap}); retry later")
                await send({"type": "http.response.start", "status": 503, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"retry-after", b"1"), (b"connection", b"close"),
                ]})
                await send({"type": "http.response.body", "body": body})
                return
            await app(scope, receive, send)

        return capped


def protocol_class(
    *, header_timeout_s: float, body_timeout_s: float, body_min_rate: float, max_connections: int | None,
) -> type[TimeoutH11Protocol]:
    """A :class:`TimeoutH11Protocol` with these limits, for ``uvicorn.run(http=...)``."""
    return type("ConfiguredH11Protocol", (TimeoutH11Protocol,), {
        "header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s,
        "body_min_rate": body_min_rate, "max_connections": max_connections,
    })
