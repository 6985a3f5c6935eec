"""The FastAPI application: heavy resources are built once, in the lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from agent.llm import ChatMessage, LLMBackend, LLMError, tags_schema
from serve.backends import backend_from_settings
from serve.settings import Settings, load_settings

CANARY_CHOICES = ["yes", "no"]


@dataclass
class AppState:
    settings: Settings
    llm: LLMBackend


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.tagsmith
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def llm_canary(llm: LLMBackend) -> str | None:
    """One tiny constrained request; None when the backend answers on-schema, else why not."""
    try:
        gen = llm.generate(
            [ChatMessage("user", "Is water wet? Answer yes or no.")],
            tags_schema(CANARY_CHOICES),
            max_tokens=16,
        )
    except LLMError as exc:
        return str(exc)
    tags = gen.parsed.get("tags") if isinstance(gen.parsed, dict) else None
    if not isinstance(tags, list) or not tags or not all(t in CANARY_CHOICES for t in tags):
        return f"LLM answered off-schema: {gen.text[:80]!r}"
    return None


def create_app(settings: Settings | None = None, *, llm: LLMBackend | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = llm is None
        backend: LLMBackend = (
            await asyncio.to_thread(backend_from_settings, settings) if llm is None else llm
        )
        app.state.tagsmith = AppState(settings=settings, llm=backend)
        try:
            yield
        finally:
            if owned:
                backend.close()

    app = FastAPI(
        title="tagsmith",
        version="0.1.0",
        summary="Tag products with nodes of your taxonomy.",
        lifespan=lifespan,
    )

    @app.get("/healthz", tags=["operations"], summary="The process is alive.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Ready to tag: the LLM backend answers a constrained canary request.",
        responses={503: {"description": "not ready; `checks` says what failed"}},
    )
    async def readyz(state: StateDep) -> JSONResponse:
        problem = await asyncio.to_thread(llm_canary, state.llm)
        checks = {"llm": problem or "ok"}
        status = 200 if problem is None else 503
        return JSONResponse({"status": "ok" if status == 200 else "unavailable", "checks": checks}, status)

    return app
