"""The FastAPI application: routers per capability, middleware, the one error shape.

Heavy resources (embedder, taxonomy snapshot, index, LLM) are built once, in the
lifespan, in the background: the process answers ``/healthz`` at once and ``/readyz``
(and the API) when they are loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.exc import OperationalError
from starlette.types import Scope

from agent.llm import LLMBackend
from serve.api.auth import AuthMiddleware
from serve.api.crosswalks.router import router as crosswalks_router
from serve.api.errors import install_error_handlers
from serve.api.feedback.router import router as feedback_router
from serve.api.jobs.router import router as jobs_router
from serve.api.jsonbody import install_json_depth_limit
from serve.api.keys.router import router as keys_router
from serve.api.limits import BodyLimitMiddleware
from serve.api.observe import RequestContextMiddleware
from serve.api.ops.router import router as ops_router
from serve.api.review.router import router as review_router
from serve.api.tags.router import router as tags_router
from serve.api.taxonomy.router import router as taxonomy_router
from serve.database import is_unavailable
from serve.llm_health import llm_canary
from serve.settings import Settings, load_settings
from serve.state import AppState, load_services, open_state
from serve.ui.app import install_ui, session_store

__all__ = ["create_app", "llm_canary"]
log = logging.getLogger("tagsmith.service")

DESCRIPTION = """Tag e-commerce products with nodes of your taxonomy.

**Auth**: send `Authorization: Bearer <key>` (keys from `tagsmith keys create`). Scopes:
`tags` (tagging, jobs), `feedback` (feedback, examples, the review queue), `taxonomy:write`,
`admin` (everything, and keys).
Reading the taxonomy needs any valid key. `/healthz`, `/readyz`, `/metrics` and the docs are open.

**Errors** all have one shape:
`{"error": {"status": 422, "code": "validation_error", "message": "…", "request_id": "…",
"details": [{"loc": ["body", "title"], "message": "…", "type": "…"}]}}`.
401 missing/invalid key, 403 missing scope, 404 unknown resource, 405 method not allowed
(Allow lists the path's methods), 408 request too slow to arrive, 409 wrong state
(`taxonomy_missing`: a crosswalk's taxonomy is not imported yet),
412 stale If-Match, 413 body too large, 422 invalid input or limits, 428 If-Match missing,
429 rate limit, per key or per address for failed authentications (Retry-After),
503 starting/overloaded/busy/LLM unavailable (Retry-After).
"""


async def _load(state: AppState) -> None:
    try:
        services = await asyncio.to_thread(load_services, state)
        await services.batcher.start()
        services.worker.start()
        state.services = services
        current = services.tagging.current
        log.info("ready", extra={"taxonomy_version": current.snapshot.version,
                                 "pipeline": services.tagging.pipeline, "examples": len(current.index)})
    except Exception as exc:
        state.load_error = f"{type(exc).__name__}: {exc}"
        log.exception("start-up failed")
    finally:
        state.loaded.set()


async def _refresh(state: AppState) -> None:
    """Pick up taxonomy versions and index generations that other processes publish."""
    interval = state.settings.server.refresh_interval_s
    if interval <= 0:
        return
    while True:
        await asyncio.sleep(interval)
        if state.services is not None:
            try:
                await asyncio.to_thread(state.services.tagging.refresh)
            except OperationalError as exc:
                if not is_unavailable(exc):
                    log.exception("refresh failed")
                else:  # once per interval, without a trace: the next poll catches up when it is back
                    log.warning("refresh: the database is unavailable (%s)", type(exc.orig).__name__)
            except Exception:
                log.exception("refresh failed")


def create_app(settings: Settings | None = None, *, llm: LLMBackend | None = None) -> FastAPI:
    """The service. ``llm``: a backend to use instead of the configured one (stays the caller's)."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = open_state(settings, llm)
        app.state.tagsmith = state
        ui = app.state.tagsmith_ui
        ui.sessions = session_store(settings)  # the database's when database.url is set
        tasks = [asyncio.create_task(_load(state)), asyncio.create_task(_refresh(state))]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            services = state.services
            if services is not None:
                await asyncio.to_thread(services.worker.stop)
                await services.batcher.stop()
                services.tagging.stop()
                services.close()
            ui.sessions.close()
            state.close()

    app = FastAPI(
        title="tagsmith", version="0.1.0", summary="Tag products with nodes of your taxonomy.",
        description=DESCRIPTION, lifespan=lifespan,
    )
    install_error_handlers(app)
    for router in (
        ops_router, tags_router, jobs_router, taxonomy_router, crosswalks_router, feedback_router, review_router,
        keys_router,
    ):
        app.include_router(router)
    install_ui(app, settings)  # the web UI at /ui/ (serve/ui)

    def job_upload(scope: Scope) -> bool:
        return bool(scope["path"] == "/v1/jobs")

    def body_limit(scope: Scope) -> int:
        if job_upload(scope):
            return settings.limits.max_job_bytes
        return settings.limits.max_body_bytes

    # added innermost first: a request meets RequestContext, Auth, BodyLimit, then the JSON
    # depth check (job uploads check each line themselves, as they stream)
    install_json_depth_limit(app, settings.limits.max_json_depth, skip=job_upload)
    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit)
    app.add_middleware(AuthMiddleware)
    app.add_middleware(RequestContextMiddleware)
    return app
