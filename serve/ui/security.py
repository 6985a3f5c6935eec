"""Browser-facing protections of the UI: security headers on every ``/ui`` response and
the same-origin check of state-changing requests (with the CSRF token: :mod:`serve.ui.pages`).

The Content-Security-Policy allows scripts, styles, images and fetches from this origin
only: no inline script or style, no ``eval``, no framing, forms posting to this origin only.
Product text that slipped through as markup could therefore not run even if it were not
escaped (it is: Jinja2 autoescapes every page, and the script builds DOM with textContent).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.api.auth import UI_PREFIX as PREFIX
from serve.api.auth import is_ui_path

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
__all__ = ["CSP", "HEADERS", "SecurityHeadersMiddleware", "is_ui_path", "same_origin"]


class SecurityHeadersMiddleware:
    """Adds :data:`HEADERS` (and ``Cache-Control: no-store`` on pages) to ``/ui`` responses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_ui_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith(PREFIX + "/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [h for h in HEADERS if h[0] not in names]
                if not static and b"cache-control" not in names:
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(scheme: str, host: str | None, origin: str | None, referer: str | None) -> bool:
    """Whether a state-changing request comes from a page of this site: its ``Origin`` (or,
    when a browser sends none, its ``Referer``) must be this server's own origin. A request
    with neither is refused: every browser sends one of them on a POST."""
    if not host:
        return False
    own = f"{scheme}://{host}".lower()
    if origin is not None and origin != "null":
        return origin.lower() == own
    if origin == "null":
        return False
    if referer:
        return _origin_of(referer) == own
    return False
