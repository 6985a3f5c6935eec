"""Review queue screens (built on the review service once it is in: serve/review/)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from serve.ui.web import SessionDep, render

router = APIRouter(prefix="/ui/queue", include_in_schema=False)


def open_count(state: object) -> int | None:
    """Open items in the review queue (None: no queue in this build)."""
    return None


@router.get("")
async def queue(request: Request, session: SessionDep) -> Response:
    return render(request, "queue_missing.html", session=session)
