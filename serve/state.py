"""The wiring: stores opened at start-up, then the tagging state, batcher and services.

Start-up has two phases. :func:`open_state` is quick and runs before the app accepts
requests: it opens the key, job and feedback stores and refuses to start when auth is not
configured. :func:`load_services` is slow (embedder, taxonomy snapshot, index, LLM) and
runs in the background: meanwhile ``/healthz`` answers 200, ``/readyz`` and the API 503.

This module builds the API's services and hands them over in :class:`AppState`
(``serve/api/context.py``); the API never imports it.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from pathlib import Path

from agent.contract import TagResult
from agent.llm import LLMBackend
from agent.tagger import LLM_PIPELINES
from serve.api.context import AppState, Services
from serve.api.crosswalks.service import CrosswalkService
from serve.api.feedback.service import FeedbackService
from serve.api.jobs.service import JobService
from serve.api.limits import RateLimiter
from serve.api.review.service import ReviewService
from serve.api.tags.service import TagService
from serve.api.taxonomy.service import TaxonomyService
from serve.attribute_selection import selection_key, selection_problem
from serve.backends import backend_from_settings
from serve.batcher import Batcher
from serve.crosswalk_tags import add_crosswalk
from serve.crosswalks import open_crosswalk_catalog
from serve.feedback import FeedbackStore
from serve.filemodes import private_data_dir
from serve.jobs import JobItem, JobRecord, JobStore, JobWorker
from serve.keys import KeyStore, admin_key_problem
from serve.llm_health import LLMHealth, track
from serve.metrics import Metrics
from serve.migrations import prepare as prepare_schemas
from serve.review import ReviewEnqueuer, ReviewStore
from serve.runtime import build_runtime, open_index_store
from serve.settings import Settings
from serve.tagging_state import TaggingState
from taxonomy.crosswalk_catalog import CrosswalkCatalog
from taxonomy.migrations import SchemaError

__all__ = ["AppState", "Services", "StartupRefused", "auth_problem", "load_services", "open_state"]

log = logging.getLogger("tagsmith.service")


class StartupRefused(RuntimeError):
    """The configuration is unsafe or incomplete: the service does not start."""


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
    private_data_dir(settings.data_dir)
    try:  # every store's schema at the head first (database.auto_upgrade), or no start
        prepare_schemas(settings)
    except SchemaError as exc:
        raise StartupRefused(str(exc)) from None
    keys = KeyStore(settings.store_location("keys"), outage_ttl_s=settings.auth.outage_key_ttl_s)
    problem = auth_problem(settings, keys)
    if problem is not None:
        keys.close()
        raise StartupRefused(problem)
    if settings.auth.dev_mode:
        log.warning("DEV MODE: authentication is off, every request has every scope")
    limits = settings.limits
    metrics = Metrics()
    review_store = ReviewStore(review_store_path(settings), claim_ttl_s=settings.review.claim_ttl_s)

    def count(outcome: str, n: int) -> None:
        metrics.review_enqueue.labels(outcome).inc(n)

    return AppState(
        settings=settings, metrics=metrics, keys=keys,
        limiter=RateLimiter(limits.rate_per_s, limits.rate_burst),
        job_store=JobStore(
            settings.store_location("jobs"), settings.data_dir / "jobs", batch_size=settings.jobs.batch_size,
        ),
        feedback_store=FeedbackStore(settings.store_location("feedback")), review_store=review_store,
        review_enqueuer=ReviewEnqueuer(review_store, max_pending=settings.review.enqueue_buffer, count=count),
        llm=llm,
    )


def review_store_path(settings: Settings) -> Path | str:
    """The review queue's database, a SQLite file or ``database.url`` (the CLI's
    ``tag-file --review-queue`` writes it too)."""
    return settings.store_location("review")


def tag_job_items(
    tagging: TaggingState, items: Sequence[JobItem], crosswalks: CrosswalkCatalog | None = None
) -> list[TagResult]:
    """Tag job lines in order, each run of lines asking for the same attributes together;
    lines that ask for a crosswalk get their ``crosswalk`` field."""
    results: list[TagResult] = []
    for _, run in itertools.groupby(items, key=lambda item: selection_key(item.selection)):
        group = list(run)
        results += tagging.tag([item.product for item in group], group[0].selection)
    if crosswalks is None:
        return results
    for index, item in enumerate(items):
        if item.crosswalk is not None:
            results[index] = add_crosswalk(crosswalks, item.crosswalk, [results[index]])[0]
    return results


def load_services(state: AppState) -> Services:
    """Build the heavy runtime (embedder, taxonomy snapshot, index, LLM) and the services
    over it. Slow: runs in a thread; the batcher and the jobs worker are not started yet."""
    settings, metrics = state.settings, state.metrics
    health = LLMHealth()
    backend: LLMBackend | None = None
    if state.llm is not None:
        backend = track(state.llm, health, metrics, owned=False)
    elif settings.tagging.pipeline in LLM_PIPELINES:
        backend = track(backend_from_settings(settings), health, metrics, owned=True)
    index_store = open_index_store(settings)
    try:
        pointer = index_store.current()
        runtime = build_runtime(settings, llm=backend, index_store=index_store)
    except BaseException:
        index_store.close()
        raise
    crosswalks = open_crosswalk_catalog(settings, runtime.store)

    def close() -> None:
        crosswalks.close()
        runtime.close()
        index_store.close()

    tagging = TaggingState(
        runtime.tagger, runtime.index, taxonomy_store=runtime.store, index_store=index_store,
        embedder=runtime.embedder, metrics=metrics, generation=pointer[0] if pointer else None,
        target_precision=settings.tagging.target_precision,
    )
    problem = selection_problem(tagging.snapshot, settings.tagging.attributes)
    if problem is not None:  # a typo in the configuration: every default request would get none
        log.warning(f"tagging.attributes: {problem}")
    batcher = Batcher(
        tagging.tag, metrics, max_batch=settings.limits.max_batch_items,
        max_queue=settings.limits.max_queue_items, workers=settings.server.engine_workers,
    )
    feedback = FeedbackService(tagging, runtime.embedder, state.feedback_store)
    review = ReviewService(state.review_store, feedback, tagging, settings.review, state.review_enqueuer)

    def job_results(job: JobRecord, items: Sequence[JobItem], results: Sequence[TagResult]) -> None:
        if review.wanted(job.review):
            review.enqueue([item.product for item in items], results, f"job:{job.id}")

    worker = JobWorker(
        state.job_store, lambda items: tag_job_items(tagging, items, crosswalks), metrics,
        lease_s=settings.jobs.lease_s,
        fail_when_degraded=settings.server.on_llm_unavailable == "error", on_results=job_results,
    )
    return Services(
        tagging=tagging, batcher=batcher, worker=worker,
        tags=TagService(batcher, settings, metrics, lambda: tagging.snapshot, review=review, crosswalks=crosswalks),
        jobs=JobService(state.job_store, worker, settings, lambda: tagging.snapshot, crosswalks=crosswalks),
        taxonomy=TaxonomyService(runtime.store, tagging, settings.limits),
        feedback=feedback,
        review=review,
        crosswalks=CrosswalkService(crosswalks),
        close=close,
    )
