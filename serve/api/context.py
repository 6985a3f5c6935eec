"""What the API reads from the app (``app.state.tagsmith``): the stores opened at start-up,
then the services once loaded.

The types only: they are built by :mod:`serve.state` (the wiring), which imports the API's
services; nothing under ``serve/api`` imports the wiring back (tests/test_layout.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.llm import LLMBackend
from serve.api.crosswalks.service import CrosswalkService
from serve.api.feedback.service import FeedbackService
from serve.api.jobs.service import JobService
from serve.api.limits import RateLimiter
from serve.api.review.service import ReviewService
from serve.api.tags.service import TagService
from serve.api.taxonomy.service import TaxonomyService
from serve.batcher import Batcher
from serve.feedback import FeedbackStore
from serve.jobs import JobStore, JobWorker
from serve.keys import KeyStore
from serve.metrics import Metrics
from serve.review import ReviewEnqueuer, ReviewStore
from serve.settings import Settings
from serve.tagging_state import TaggingState


@dataclass
class Services:
    tagging: TaggingState
    batcher: Batcher
    worker: JobWorker
    tags: TagService
    jobs: JobService
    taxonomy: TaxonomyService
    feedback: FeedbackService
    crosswalks: CrosswalkService
    review: ReviewService
    close: Callable[[], None]
    """Release what loading opened (the LLM backend, the taxonomy store)."""


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics
    keys: KeyStore
    limiter: RateLimiter
    job_store: JobStore
    feedback_store: FeedbackStore
    review_store: ReviewStore
    review_enqueuer: ReviewEnqueuer
    llm: LLMBackend | None = None  # handed in by the caller (tests): not ours to close
    services: Services | None = None
    load_error: str | None = None
    loaded: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        self.job_store.close()
        self.feedback_store.close()
        self.review_enqueuer.close()
        self.review_store.close()
        self.keys.close()
