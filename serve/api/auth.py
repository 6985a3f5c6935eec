"""Authentication (middleware: who is calling, 401) and authorisation (dependency: may they, 403).

Authentication runs before routing and body parsing, so an anonymous client learns
nothing from a 422 or a 404: every non-open path answers 401 without a valid key. The
per-key rate limit is applied right after (429). Failed authentications are limited per
client address (``auth_failures.py``): an address over its budget gets 429 before its key
is verified. The scope check is a dependency of each route (``require("tags")``), which
also documents the bearer scheme in the OpenAPI schema.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import OperationalError
from starlette.types import ASGIApp, Receive, Scope, Send

from serve.api.auth_failures import AuthFailureLimiter, client_key
from serve.api.errors import (
    DATABASE_DOWN,
    DATABASE_RETRY_AFTER_S,
    ApiError,
    error_body,
    retry_after,
)
from serve.api.limits import request_cost
from serve.database import is_unavailable
from serve.keys import SCOPES, KeyStore
from serve.settings import Settings

log = logging.getLogger("tagsmith.api")

#: paths anyone may call (health, metrics, the documentation)
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
#: the web UI (serve/ui): its pages authenticate with a session made by its login form
UI_PREFIX = "/ui"


def is_ui_path(path: str) -> bool:
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes


DEV_PRINCIPAL = Principal("dev", "dev mode (no keys)", frozenset(SCOPES))


def authenticate(settings: Settings, keys: KeyStore, authorization: str | None) -> Principal | None:
    if settings.auth.dev_mode:
        return DEV_PRINCIPAL
    if not authorization:
        return None
    kind, _, token = authorization.partition(" ")
    token = token.strip()
    if kind.lower() != "bearer" or not token:
        return None
    admin = settings.auth.admin_key
    if admin is not None and hmac.compare_digest(token.encode(), admin.get_secret_value().encode()):
        return Principal("config-admin", "TAGSMITH_AUTH__ADMIN_KEY", frozenset({"admin"}))
    record = keys.verify(token)
    return None if record is None else Principal(record.id, record.name, record.scopes)


async def _reply(send: Send, status: int, code: str, message: str, headers: dict[str, str]) -> None:
    body = error_body(status, code, message)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class AuthMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # made on the first request: the settings live in the app state, not here
        self._failures: AuthFailureLimiter | None = None

    def _failure_limiter(self, settings: Settings) -> AuthFailureLimiter:
        if self._failures is None:
            limits = settings.limits
            self._failures = AuthFailureLimiter(
                limits.auth_failures_per_min, limits.auth_failure_burst, limits.auth_failure_clients,
            )
        return self._failures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or is_ui_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state.tagsmith
        authorization = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None
        )
        # only requests presenting credentials are guesses; one without any learns nothing
        guarded = authorization is not None and not state.settings.auth.dev_mode
        failures = self._failure_limiter(state.settings)
        client = client_key((scope.get("client") or (None,))[0])
        if guarded and (blocked := failures.blocked_for(client)) > 0:
            # before verifying the key: while limited, a right key and a wrong one look alike
            state.metrics.auth_failures.labels("limited").inc()
            await _reply(
                send, 429, "rate_limited",
                "too many failed authentications from this address "
                f"({state.settings.limits.auth_failures_per_min:g} a minute, burst "
                f"{state.settings.limits.auth_failure_burst}); retry after the Retry-After seconds",
                retry_after(blocked),
            )
            return
        try:
            principal = authenticate(state.settings, state.keys, authorization)
        except OperationalError as exc:
            if not is_unavailable(exc):
                raise
            # the key store's database is down: 503, not 401 (nor a 500)
            log.warning("database unavailable while verifying an API key: %s", type(exc.orig).__name__)
            await _reply(send, 503, "unavailable", DATABASE_DOWN, retry_after(DATABASE_RETRY_AFTER_S))
            return
        if principal is None:
            if guarded:
                state.metrics.auth_failures.labels("invalid").inc()
                if failures.failed(client):  # once per exhaustion, not per request: no log flood
                    log.warning(
                        "client %s spent its failed-authentication budget: its requests get 429 "
                        "until it refills", client,
                    )
            await _reply(
                send, 401, "unauthorized",
                "a valid API key is required: send `Authorization: Bearer <key>` "
                "(create one with `tagsmith keys create`)",
                {"WWW-Authenticate": 'Bearer realm="tagsmith"'},
            )
            return
        cost = request_cost(scope)  # expensive reads take several tokens (serve/api/limits.py)
        wait = state.limiter.acquire(principal.key_id, cost)
        if wait > 0:
            state.metrics.rate_limited.inc()
            await _reply(
                send, 429, "rate_limited",
                f"rate limit of key {principal.key_id} exceeded "
                f"({state.limiter.describe(cost)}); "
                "retry after the Retry-After seconds",
                retry_after(wait),
            )
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


bearer = HTTPBearer(
    auto_error=False, scheme_name="apiKey",
    description="an API key from `tagsmith keys create`: `Authorization: Bearer tsk_…`",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def current_principal(request: Request) -> Principal:
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:  # only when a route is mounted outside the middleware
        raise ApiError(401, "unauthorized", "a valid API key is required")
    return principal


def require(scope: str | None) -> Callable[..., Awaitable[Principal]]:
    """Dependency: the caller's principal, which must hold ``scope`` (None: any valid key)."""

    async def dependency(request: Request, _: Credentials) -> Principal:
        principal = current_principal(request)
        if scope is not None and not principal.allows(scope):
            raise ApiError(
                403, "forbidden",
                f"this operation needs the {scope!r} scope; key {principal.key_id} has "
                f"{', '.join(sorted(principal.scopes)) or 'none'}",
            )
        return principal

    dependency.__name__ = f"require_{(scope or 'any').replace(':', '_')}"
    return dependency


#: ready-made ``Annotated`` dependencies per scope
AnyKey = Annotated[Principal, Depends(require(None))]
TagsScope = Annotated[Principal, Depends(require("tags"))]
FeedbackScope = Annotated[Principal, Depends(require("feedback"))]
TaxonomyWriteScope = Annotated[Principal, Depends(require("taxonomy:write"))]
AdminScope = Annotated[Principal, Depends(require("admin"))]

