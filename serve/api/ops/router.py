"""Operations endpoints, open to anyone: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from agent.llm.pool import pool_status
from serve.api.context import AppState
from serve.api.deps import StateDep
from serve.api.ops.protocol import CalibrationInfo, Health, Status
from serve.llm_health import describe_endpoints, llm_canary

router = APIRouter(tags=["operations"])


def _dead(state: AppState) -> str | None:
    services = state.services
    if state.load_error is not None:
        return f"start-up failed: {state.load_error}"
    if services is None:
        return None
    if not services.batcher.alive:
        return services.batcher.failure or "the tagging engine stopped"
    if not services.worker.alive:
        return services.worker.failure or "the jobs worker stopped"
    return None


def _reply(
    status: Status, checks: dict[str, str], code: int, calibration: CalibrationInfo | None = None
) -> JSONResponse:
    body = Health(status=status, checks=checks, calibration=calibration)
    return JSONResponse(body.model_dump(), status_code=code)


def _calibration(state: AppState) -> CalibrationInfo | None:
    services = state.services
    if services is None:
        return None
    tagger = services.tagging.current.tagger
    calibration = tagger.generator.calibration
    if calibration is None:
        return None
    configured = tagger.config.review_threshold is not None
    source = "configured" if configured else ("fitted" if calibration.fitted else "default")
    target = tagger.config.target_precision or calibration.target_precision
    return CalibrationInfo(
        method=calibration.method, ece=calibration.ece, temperature=calibration.temperature,
        knn_temperature=calibration.knn_temperature, review_threshold=tagger.review_threshold,
        review_threshold_source=source, target_precision=target, held_out=calibration.held_out,
        far_similarity=calibration.far_similarity, refit_pending=calibration.refit_pending,
        note=calibration.note,
    )


_HEALTH: dict[int | str, dict[str, Any]] = {503: {"model": Health, "description": "see `checks`"}}


@router.get("/healthz", response_model=Health, responses=_HEALTH, summary="The process is alive (503: the engine died).")
async def healthz(state: StateDep) -> JSONResponse:
    problem = _dead(state)
    if problem is not None:
        return _reply("dead", {"engine": problem}, 503)
    return _reply("ok", {"engine": "ok" if state.services is not None else "starting"}, 200)


@router.get(
    "/readyz", response_model=Health, responses=_HEALTH,
    summary="Ready: taxonomy and index loaded, workers alive, the database and the LLM answer.",
)
async def readyz(state: StateDep) -> JSONResponse:
    services = state.services
    problem = _dead(state)
    if problem is not None:
        return _reply("dead", {"engine": problem}, 503)
    if services is None:
        return _reply("starting", {"engine": "loading the taxonomy, index and models"}, 503)
    tagging = services.tagging
    current = tagging.current
    checks = {
        "engine": "ok",
        "taxonomy": f"version {current.snapshot.version}, {len(current.snapshot.active_leaf_ids)} active leaves",
        "index": f"{len(current.index)} examples ({current.index_generation or 'unpublished'})",
        "jobs_worker": "ok",
    }
    calibration = _calibration(state)
    if calibration is not None:
        checks["calibration"] = (
            f"{calibration.method}: ECE {calibration.ece}, review threshold "
            f"{calibration.review_threshold:.3f} ({calibration.review_threshold_source})"
        )
    # the database (keys, taxonomy edits, feedback, jobs ...): down, this replica still tags
    # with keys it verified lately (auth.outage_key_ttl_s), but it is not fully ready
    database = await asyncio.to_thread(state.keys.ping)
    checks["database"] = database or "ok"
    llm = tagging.llm
    if llm is not None:
        problem = await asyncio.to_thread(llm_canary, llm)
        checks["llm"] = problem or "ok"
        endpoints = pool_status(llm)
        if endpoints is not None:
            checks["llm_endpoints"] = describe_endpoints(endpoints)
    else:
        checks["llm"] = f"not used by the {tagging.pipeline} pipeline"
    ready = problem is None and database is None
    return _reply("ok" if ready else "unavailable", checks, 200 if ready else 503, calibration)


@router.get(
    "/metrics", response_class=Response, summary="Prometheus metrics.",
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}, "description": "text format"}},
)
async def metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
