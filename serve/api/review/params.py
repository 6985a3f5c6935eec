"""The ``?review=`` query parameter of the tagging endpoints and jobs, declared for FastAPI."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

#: ``?review=`` of the tagging endpoints and jobs
ReviewQuery = Annotated[
    bool | None,
    Query(description="put results flagged needs_review into the review queue (`/v1/review`): true or "
          "false; default: the review.enqueue setting (off unless configured). Enqueuing happens in "
          "the background and never fails or delays the answer"),
]
