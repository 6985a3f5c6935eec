"""Login, logout and the start page of the UI."""

from __future__ import annotations

import hmac
import logging
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import Response

from serve.api.auth import authenticate
from serve.api.auth_failures import client_key
from serve.api.context import AppState
from serve.ui.reports import list_reports
from serve.ui.review_pages import open_count
from serve.ui.sessions import COOKIE, LOGIN_COOKIE
from serve.ui.web import (
    SessionDep,
    UIError,
    app_state,
    check_same_origin,
    checked_form,
    read_form,
    redirect,
    render,
    safe_next,
    ui_state,
)

log = logging.getLogger("tagsmith.ui")
router = APIRouter(prefix="/ui", include_in_schema=False)
MAX_KEY_CHARS = 200


def _cookie_args(request: Request) -> dict[str, object]:
    return {"httponly": True, "samesite": "strict", "secure": request.url.scheme == "https", "path": "/ui"}


def _login_page(request: Request, next_path: str, error: str | None = None, status: int = 200) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", status=status, login_token=token, next=safe_next(next_path), error=error)
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, **_cookie_args(request))  # type: ignore[arg-type]
    return response


@router.get("/login")
async def login_form(request: Request) -> Response:
    return _login_page(request, request.query_params.get("next", "/ui/"))


@router.post("/login")
async def login(request: Request) -> Response:
    check_same_origin(request)
    form = await read_form(request)
    next_path = safe_next(form.get("next"))
    expected = request.cookies.get(LOGIN_COOKIE, "")
    presented = form.get("csrf", "")
    if not expected or not hmac.compare_digest(expected.encode(), presented.encode()):
        return _login_page(request, next_path, "The login form expired: try again.", 403)
    state, ui = app_state(request), ui_state(request)
    client = client_key(request.client.host if request.client else None)
    blocked = ui.login_failures.blocked_for(client)
    if blocked > 0 and not state.settings.auth.dev_mode:
        return _login_page(request, next_path, f"Too many failed logins from this address: retry in {blocked:.0f} s.", 429)
    key = form.get("key", "").strip()
    principal = None
    if len(key) <= MAX_KEY_CHARS:
        principal = authenticate(state.settings, state.keys, f"Bearer {key}" if key else None)
    if principal is None:
        ui.login_failures.failed(client)
        state.metrics.auth_failures.labels("invalid").inc()
        log.info("ui login refused", extra={"client": client})
        return _login_page(request, next_path, "That key is not valid (unknown, malformed or revoked).", 401)
    session = ui.sessions.create(principal)
    log.info("ui login", extra={"key_id": principal.key_id})
    response = redirect(next_path)
    response.set_cookie(COOKIE, session.id, **_cookie_args(request))  # type: ignore[arg-type]
    response.delete_cookie(LOGIN_COOKIE, path="/ui")
    return response


@router.post("/logout")
async def logout(request: Request, session: SessionDep) -> Response:
    await checked_form(request, session)
    ui_state(request).sessions.drop(session.id)
    response = redirect("/ui/login", "Logged out.")
    response.delete_cookie(COOKIE, path="/ui")
    return response


@router.get("/")
async def home(request: Request, session: SessionDep) -> Response:
    state = app_state(request)
    version: int | str = "(loading)"
    queue_count: int | None = None
    if state.services is not None:
        version = state.services.tagging.snapshot.version
        queue_count = _queue_count(state)
    return render(
        request, "home.html", session=session, version=version, queue_count=queue_count,
        can_edit=session.principal.allows("taxonomy:write"),
        report_count=len(list_reports(state.settings.reports_dir)), reports_dir=str(state.settings.reports_dir),
    )


def _queue_count(state: AppState) -> int | None:
    return open_count(state) if state.services is not None else None


@router.get("")
async def bare() -> Response:
    return redirect("/ui/")


def not_found() -> UIError:
    return UIError(404, "Not found", "There is no such page.")
