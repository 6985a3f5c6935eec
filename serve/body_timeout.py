"""Deadlines for reading a request body: 408 (the one error shape) instead of waiting forever.

An ASGI wrapper around the app's ``receive``: while the body is incomplete, each read waits
at most ``idle_s`` for the next piece, and the body as a whole must keep up a minimum
average rate: by ``idle_s + received / min_rate`` seconds after the request head (Apache's
mod_reqtimeout ``MinRate`` idea: a client trickling a byte a second beats the first limit,
not the second, while a 60 MiB upload on a slow but honest link is not cut). On expiry the
read raises a 408 HTTPException inside the handler that was reading, so the app's error
handlers answer it (request id, metrics) with ``Connection: close``: the rest of that body
is never going to be read. Once the body is complete, ``receive`` is passed through
untouched (a streaming response waits on it for the disconnect).
"""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTimeoutMiddleware:
    def __init__(self, app: ASGIApp, *, idle_s: float, min_rate: float) -> None:
        self.app = app
        self.idle_s = idle_s
        self.min_rate = min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        complete = False
        received = 0

        async def timed_receive() -> Message:
            nonlocal complete, received
            if complete:
                return await receive()
            deadline = started + self.idle_s + received / self.min_rate
            limit = min(self.idle_s, deadline - loop.time())
            try:
                async with asyncio.timeout(max(limit, 0.0)):
                    message = await receive()
            except TimeoutError:
                what = ("the next part of the request body did not arrive in time" if limit == self.idle_s
                        else "the request body is arriving too slowly")
                raise HTTPException(
                    408, f"{what} (server.body_timeout_s {self.idle_s:g} s between parts; "
                    f"server.body_min_rate_bytes_s {self.min_rate:g} bytes/s on average after that)",
                    headers={"Connection": "close"},
                ) from None
            received += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        await self.app(scope, timed_receive, send)
