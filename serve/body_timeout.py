"""Deadlines for reading a request body: 408 (the one error shape) instead of waiting forever.

An ASGI wrapper around the app's ``receive``: while the body is incomplete, each read waits
at most ``idle_s`` for the next piece and never past ``total_s`` after the request head
(a client trickling a byte a second beats the first limit, not the second). On expiry the
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
    def __init__(self, app: ASGIApp, *, idle_s: float, total_s: float) -> None:
        self.app = app
        self.idle_s = idle_s
        self.total_s = total_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.total_s
        complete = False

        async def timed_receive() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            limit = min(self.idle_s, deadline - loop.time())
            try:
                async with asyncio.timeout(max(limit, 0.0)):
                    message = await receive()
            except TimeoutError:
                which = "the next part" if limit == self.idle_s else "all"
                raise HTTPException(
                    408, f"{which} of the request body did not arrive in time "
                    f"(server.body_timeout_s {self.idle_s:g} s between parts, "
                    f"server.body_total_timeout_s {self.total_s:g} s in all)",
                    headers={"Connection": "close"},
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        await self.app(scope, timed_receive, send)
