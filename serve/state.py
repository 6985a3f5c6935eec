"""What the app holds: stores opened at start-up, then the engine and services once loaded.

Start-up has two phases. :func:`open_state` is quick and runs before the app accepts
requests: it opens the key, job and feedback stores and refuses to start when auth is not
configured. :func:`load_services` is slow (embedder, taxonomy snapshot, index, LLM) and
runs in the background: meanwhile ``/healthz`` answers 200, ``/readyz`` and the API 503.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from agent.llm import LLMBackend
from agent.tagger import LLM_PIPELINES
from retrieval import IndexStore
from serve.api.feedback.service import FeedbackService
from serve.api.jobs.service import JobService
from serve.api.limits import RateLimiter
from serve.api.tags.service import TagService
from serve.api.taxonomy.service import TaxonomyService
from serve.backends import backend_from_settings
from serve.engine import TaggingEngine
from serve.feedback import FeedbackStore
from serve.jobs import JobStore, JobWorker
from serve.keys import KeyStore, admin_key_problem, key_store_path
from serve.llm_health import LLMHealth, track
from serve.metrics import Metrics
from serve.runtime import build_runtime
from serve.settings import Settings

log = logging.getLogger("tagsmith.service")


class StartupRefused(RuntimeError):
    """The configuration is unsafe or incomplete: the service does not start."""


@dataclass
class Services:
    engine: TaggingEngine
    worker: JobWorker
    tags: TagService
    jobs: JobService
    taxonomy: TaxonomyService
    feedback: FeedbackService


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics
    keys: KeyStore
    limiter: RateLimiter
    job_store: JobStore
    feedback_store: FeedbackStore
    llm: LLMBackend | None = None  # handed in by the caller (tests): not ours to close
    services: Services | None = None
    load_error: str | None = None
    loaded: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        self.job_store.close()
        self.feedback_store.close()
        self.keys.close()


def auth_problem(settings: Settings, keys: KeyStore) -> str | None:
    """Why the service must not start with this auth configuration (None: fine)."""
    admin = settings.auth.admin_key
    if admin is not None:
        problem = admin_key_problem(admin.get_secret_value())
        if problem:
            return problem
    if settings.auth.dev_mode or admin is not None or keys.has_active_keys():
        return None
    return (
        "no API key exists: create one with `tagsmith keys create --scopes admin` (it prints the "
        "key), or set TAGSMITH_AUTH__ADMIN_KEY; for local development only, "
        "TAGSMITH_AUTH__DEV_MODE=true runs without keys"
    )


def open_state(settings: Settings, llm: LLMBackend | None = None) -> AppState:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    keys = KeyStore(key_store_path(settings.data_dir))
    problem = auth_problem(settings, keys)
    if problem is not None:
        keys.close()
        raise StartupRefused(problem)
    if settings.auth.dev_mode:
        log.warning("DEV MODE: authentication is off, every request has every scope")
    limits = settings.limits
    return AppState(
        settings=settings, metrics=Metrics(), keys=keys,
        limiter=RateLimiter(limits.rate_per_s, limits.rate_burst),
        job_store=JobStore(settings.data_dir / "jobs"),
        feedback_store=FeedbackStore(settings.data_dir / "feedback.db"), llm=llm,
    )


def build_engine(state: AppState) -> TaggingEngine:
    settings, metrics = state.settings, state.metrics
    health = LLMHealth()
    backend: LLMBackend | None = None
    if state.llm is not None:
        backend = track(state.llm, health, metrics, owned=False)
    elif settings.tagging.pipeline in LLM_PIPELINES:
        backend = track(backend_from_settings(settings), health, metrics, owned=True)
    index_store = IndexStore(settings.data_dir / "index")
    pointer = index_store.current()
    runtime = build_runtime(settings, llm=backend)
    return TaggingEngine(
        runtime, index_store, health, metrics,
        max_batch=settings.limits.max_batch_items, max_queue=settings.limits.max_queue_items,
        workers=settings.server.engine_workers, generation=pointer[0] if pointer else None,
    )


def make_services(state: AppState, engine: TaggingEngine) -> Services:
    settings = state.settings

    worker = JobWorker(
        state.job_store, lambda items: engine.tag_sync([i.product for i in items]), state.metrics,
        batch_size=settings.jobs.batch_size,
        fail_when_degraded=settings.server.on_llm_unavailable == "error",
    )
    return Services(
        engine=engine, worker=worker,
        tags=TagService(engine, settings, state.metrics),
        jobs=JobService(state.job_store, worker, settings),
        taxonomy=TaxonomyService(engine.runtime.store, engine),
        feedback=FeedbackService(engine, state.feedback_store),
    )
