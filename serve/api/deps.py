"""``Annotated`` dependencies: the settings, the app state and each service.

Services exist once the background start-up has loaded them (serve/state.py); until then (or when
loading failed) the endpoints that need them answer 503 with Retry-After.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from serve.api.context import AppState, Services
from serve.api.crosswalks.service import CrosswalkService
from serve.api.errors import ApiError, retry_after
from serve.api.feedback.service import FeedbackService
from serve.api.jobs.service import JobService
from serve.api.review.service import ReviewService
from serve.api.tags.service import TagService
from serve.api.taxonomy.service import TaxonomyService
from serve.settings import Settings


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.tagsmith
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_settings(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_services(state: StateDep) -> Services:
    if state.services is None:
        if state.load_error is not None:
            raise ApiError(503, "unavailable", f"the service failed to start: {state.load_error}")
        raise ApiError(
            503, "not_ready", "the service is starting (loading the taxonomy, index and models); retry shortly",
            headers=retry_after(5),
        )
    return state.services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_tag_service(services: ServicesDep) -> TagService:
    return services.tags


async def get_job_service(services: ServicesDep) -> JobService:
    return services.jobs


async def get_taxonomy_service(services: ServicesDep) -> TaxonomyService:
    return services.taxonomy


async def get_feedback_service(services: ServicesDep) -> FeedbackService:
    return services.feedback


async def get_crosswalk_service(services: ServicesDep) -> CrosswalkService:
    return services.crosswalks


async def get_review_service(services: ServicesDep) -> ReviewService:
    return services.review


TagServiceDep = Annotated[TagService, Depends(get_tag_service)]
JobServiceDep = Annotated[JobService, Depends(get_job_service)]
TaxonomyServiceDep = Annotated[TaxonomyService, Depends(get_taxonomy_service)]
FeedbackServiceDep = Annotated[FeedbackService, Depends(get_feedback_service)]
CrosswalkServiceDep = Annotated[CrosswalkService, Depends(get_crosswalk_service)]
ReviewServiceDep = Annotated[ReviewService, Depends(get_review_service)]
