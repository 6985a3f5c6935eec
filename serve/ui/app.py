"""Mounting the UI on the service: its routers, static files, security headers, HTML errors."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError

from serve.api.auth_failures import AuthFailureLimiter
from serve.api.errors import DATABASE_RETRY_AFTER_S, log_database_unavailable, retry_after
from serve.database import is_unavailable, open_engine
from serve.settings import Settings
from serve.ui import pages, report_pages, review_pages, taxonomy_pages
from serve.ui.security import SecurityHeadersMiddleware
from serve.ui.session_db import DatabaseSessionStore
from serve.ui.sessions import Sessions, SessionStore
from serve.ui.web import HERE, LoginRequired, UIError, UIState, error_page, redirect, render


def session_store(settings: Settings) -> Sessions:
    """In the database when ``database.url`` is set (shared by replicas, kept across
    restarts), else in memory."""
    url = settings.database.url_value
    if url:
        return DatabaseSessionStore(open_engine(url), idle_timeout_s=settings.ui.session_idle_s)
    return SessionStore(idle_timeout_s=settings.ui.session_idle_s)


def install_ui(app: FastAPI, settings: Settings) -> None:
    """The UI's routes and state. Sessions start in memory; the app's lifespan replaces the
    store with :func:`session_store`'s at start-up and closes it at shutdown."""
    limits = settings.limits
    app.state.tagsmith_ui = UIState(
        sessions=SessionStore(idle_timeout_s=settings.ui.session_idle_s),
        login_failures=AuthFailureLimiter(
            limits.auth_failures_per_min, limits.auth_failure_burst, limits.auth_failure_clients,
        ),
    )
    for module in (pages, taxonomy_pages, report_pages, review_pages):
        app.include_router(module.router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")

    @app.api_route("/ui/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
    async def unknown(rest: str) -> Response:
        raise UIError(404, "Not found", "There is no such page.")

    async def on_ui_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, UIError)
        return error_page(request, exc)

    async def on_login_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        from urllib.parse import quote

        return redirect(f"/ui/login?next={quote(exc.next_path, safe='/')}")

    # install_error_handlers' (JSON 503 for the API) must be in place: a UI page gets HTML
    api_database_error = app.exception_handlers[OperationalError]

    async def on_database_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OperationalError)
        if not (request.url.path.startswith("/ui/") and is_unavailable(exc)):
            response = api_database_error(request, exc)
            return response if isinstance(response, Response) else await response
        log_database_unavailable(exc)
        # no session lookup for the page's header: sessions live in the database too
        page = render(request, "error.html", status=503, title="The database is unavailable",
                      message="Logins, the review queue and taxonomy edits need it. Nothing was "
                              f"changed; try again in {DATABASE_RETRY_AFTER_S:g} seconds.")
        page.headers.update(retry_after(DATABASE_RETRY_AFTER_S))
        return page

    app.add_exception_handler(UIError, on_ui_error)
    app.add_exception_handler(LoginRequired, on_login_required)
    app.add_exception_handler(OperationalError, on_database_error)
    app.add_middleware(SecurityHeadersMiddleware)
