"""What every UI page shares: the templates, the session of the caller, forms, the CSRF and
same-origin check of state-changing requests, and HTML error pages (never a 500 for bad input).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import parse_qsl, quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader

from serve.api.auth import Principal
from serve.api.auth_failures import AuthFailureLimiter
from serve.api.context import AppState, Services
from serve.api.errors import ApiError
from serve.ui.security import same_origin
from serve.ui.sessions import COOKIE, Session, Sessions

log = logging.getLogger("tagsmith.ui")
HERE = Path(__file__).parent
#: autoescape on for every template, whatever its name: data is never marked safe
TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=True,
    trim_blocks=True, lstrip_blocks=True,
)
MAX_FORM_FIELDS = 200


@dataclass
class UIState:
    sessions: Sessions
    login_failures: AuthFailureLimiter


class UIError(Exception):
    """Rendered as an HTML error page with this status."""

    def __init__(self, status: int, title: str, message: str = "") -> None:
        super().__init__(message or title)
        self.status, self.title, self.message = status, title, message


class LoginRequired(Exception):
    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.tagsmith
    return state


def ui_state(request: Request) -> UIState:
    ui: UIState = request.app.state.tagsmith_ui
    return ui


def services(request: Request) -> Services:
    state = app_state(request)
    if state.services is None:
        if state.load_error is not None:
            raise UIError(503, "The service failed to start", state.load_error)
        raise UIError(503, "Starting", "The service is loading its taxonomy, index and models: retry shortly.")
    return state.services


def key_still_valid(state: AppState, principal: Principal) -> bool:
    """A session lasts only while its key does (revoked: logged out)."""
    if state.settings.auth.dev_mode:
        return True
    if principal.key_id == "config-admin":
        return state.settings.auth.admin_key is not None
    record = state.keys.get(principal.key_id)
    return record is not None and record.active


async def current_session(request: Request) -> Session:
    ui = ui_state(request)
    session_id = request.cookies.get(COOKIE)
    session = ui.sessions.get(session_id)
    state = app_state(request)
    if session is not None and not key_still_valid(state, session.principal):
        ui.sessions.drop_key(session.principal.key_id)
        session = None
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target if request.method == "GET" else "/ui/")
    wait = state.limiter.acquire(session.principal.key_id, 1.0)
    if wait > 0:
        raise UIError(429, "Too many requests", f"the rate limit of key {session.principal.key_id} is spent: retry in {wait:.0f} s")
    request.state.principal = session.principal  # the access log names the key id
    return session


SessionDep = Annotated[Session, Depends(current_session)]


def require_scope(session: Session, scope: str) -> None:
    if not session.principal.allows(scope):
        raise UIError(403, "Not allowed", f"this needs the {scope!r} scope; your key has "
                      f"{', '.join(sorted(session.principal.scopes)) or 'none'}")


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the first value of each field)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise UIError(415, "Unsupported form", "send the form as application/x-www-form-urlencoded")
    body = await request.body()
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                          max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise UIError(400, "Unreadable form", "the form could not be read") from exc
    request.state.form_pairs = pairs  # every value, in order (fields that repeat: form_pairs)
    out: dict[str, str] = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


def form_pairs(request: Request) -> list[tuple[str, str]]:
    """Every (field, value) of the form :func:`read_form` read, repeated fields included
    (a ``<select multiple>``)."""
    return list(getattr(request.state, "form_pairs", []))


def check_same_origin(request: Request) -> None:
    if not same_origin(request.url.scheme, request.headers.get("host"),
                       request.headers.get("origin"), request.headers.get("referer")):
        raise UIError(403, "Cross-site request refused",
                      "this request did not come from a page of this site (Origin / Referer)")


async def checked_form(request: Request, session: Session) -> dict[str, str]:
    """The form of a state-changing request, after the same-origin and CSRF-token checks."""
    check_same_origin(request)
    form = await read_form(request)
    if not session.csrf_ok(form.get("csrf") or request.headers.get("x-csrf-token")):
        raise UIError(403, "Form expired", "the form's security token is missing or stale: reload the page and retry")
    return form


def render(request: Request, template: str, *, status: int = 200, session: Session | None = None,
           **context: Any) -> HTMLResponse:
    html = TEMPLATES.get_template(template).render(
        session=session, path=request.url.path, flash=request.query_params.get("flash"), **context,
    )
    return HTMLResponse(html, status_code=status)


def redirect(path: str, flash: str | None = None) -> RedirectResponse:
    target = path if flash is None else f"{path}{'&' if '?' in path else '?'}flash={quote(flash)}"
    return RedirectResponse(target, status_code=303)


def api_call_failed(exc: ApiError) -> NoReturn:
    """A service's documented error, as an error page with the same status."""
    titles = {404: "Not found", 409: "Conflict", 422: "Rejected", 429: "Too many requests", 503: "Busy"}
    raise UIError(exc.status, titles.get(exc.status, "Error"), exc.message) from exc


def safe_next(value: str | None) -> str:
    """Where to go after login: a path of the UI only (no other site, no scheme)."""
    if value and value.startswith("/ui/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui/"


def error_page(request: Request, exc: UIError) -> Response:
    session = ui_state(request).sessions.get(request.cookies.get(COOKIE))
    return render(request, "error.html", status=exc.status, session=session, title=exc.title, message=exc.message)
