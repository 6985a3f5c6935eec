"""Review queue screens, on the queue's own service (:class:`~serve.api.review.service.ReviewService`):
the queue in review order (most valuable first), and an item page with the product, the
suggested category and attribute values with their confidence and evidence (neighbours,
candidates, review reasons), and accept / correct / skip. After a decision the reviewer lands on
the next item, claimed for them (two reviewers never get the same one), so a run of items is a run of keystrokes (``static/ui.js``: a accept, s skip,
c correct, j/k next/previous, / search). Viewing needs the ``feedback`` scope, as the API does.

The decision forms carry the item's ``revision`` as the page showed it: when the product was
flagged again meanwhile (a new suggestion), nothing is decided and the page comes back with
the new suggestion and a notice (409). The correct form shows the chosen category's
attributes with their current values (:mod:`serve.ui.attribute_form`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from serve.api.auth import Principal
from serve.api.context import AppState
from serve.api.errors import ApiError
from serve.api.review.protocol import (
    ClaimRequest,
    CorrectionRequest,
    DecisionRequest,
    ReviewItemOut,
)
from serve.api.review.service import ReviewService
from serve.ui.attribute_form import (
    attribute_fields,
    attributes_json,
    read_attribute_values,
    suggested_values,
)
from serve.ui.counterparts import counterparts_of
from serve.ui.sessions import Session
from serve.ui.web import (
    SessionDep,
    UIError,
    api_call_failed,
    checked_form,
    form_pairs,
    redirect,
    render,
    require_scope,
    services,
)

router = APIRouter(prefix="/ui/queue", include_in_schema=False)
PAGE = 50
#: how far down the queue the item page looks for its previous / next item
NEIGHBOURHOOD = 500
MAX_ID = 200
VIEWS = {"open": ["open", "claimed"], "decided": ["accepted", "corrected", "skipped"]}


def open_count(state: AppState) -> int | None:
    """Open items in the review queue (None while the service is loading)."""
    if state.services is None:
        return None
    try:
        return state.services.review.stats().open
    except Exception:  # a count on the start page must never break it
        return None


def _service(request: Request, session: Session) -> ReviewService:
    require_scope(session, "feedback")
    return services(request).review


def _int(value: str | None, default: int, top: int) -> int:
    return min(int(value), top) if value is not None and value.isdigit() else default


@router.get("")
async def queue(request: Request, session: SessionDep) -> Response:
    service = _service(request, session)
    view = request.query_params.get("view", "open")
    if view not in VIEWS:
        raise UIError(404, "Not found", "No such view of the queue.")
    offset = _int(request.query_params.get("offset"), 0, 10_000_000)
    page = service.list_items(statuses=VIEWS[view], offset=offset, limit=PAGE)
    snap = services(request).tagging.snapshot
    return render(request, "queue.html", session=session, page=page, view=view, stats=service.stats(),
                  names=_names(snap, [i.category for i in page.items]), offset=offset, size=PAGE)


def _names(snap: Any, ids: list[str | None]) -> dict[str, str]:
    out: dict[str, str] = {}
    for node_id in ids:
        if node_id and node_id in snap:
            out[node_id] = snap.path_text(node_id)
    return out


def _neighbours(service: ReviewService, item_id: str) -> tuple[str | None, str | None]:
    ids = [i.id for i in service.list_items(statuses=VIEWS["open"], limit=NEIGHBOURHOOD).items]
    if item_id not in ids:
        return None, (ids[0] if ids else None)
    at = ids.index(item_id)
    return (ids[at - 1] if at > 0 else None), (ids[at + 1] if at + 1 < len(ids) else None)


def _item_page(request: Request, session: Session, item: ReviewItemOut, *, status: int = 200,
               error: str | None = None, form: dict[str, str] | None = None, notice: str | None = None,
               values: Mapping[str, Sequence[str]] | None = None) -> Response:
    """``form``: what the reviewer typed (shown again); ``values``: the attribute values to
    show (default: the suggestion's)."""
    service = services(request).review
    snap = services(request).tagging.snapshot
    prev_id, next_id = _neighbours(service, item.id)
    neighbour_tags = [t for n in item.result.evidence.neighbors for t in n.tags]
    names = _names(snap, [item.category, *neighbour_tags, *(c.id for c in item.result.evidence.candidates)])
    if item.decision and item.decision.category:
        names.update(_names(snap, [item.decision.category]))
    index = services(request).tagging.current.index
    titles = {n.id: ex.title for n in item.result.evidence.neighbors if (ex := index.get(n.id)) is not None}
    form = form or {}
    chosen = form.get("category", "").strip()
    attrs_for = chosen if chosen in snap else item.category
    suggested = suggested_values(item.result)
    return render(
        request, "item.html", status=status, session=session, item=item, names=names, titles=titles, prev_id=prev_id,
        next_id=next_id, error=error, form=form, decided=item.decision is not None, notice=notice,
        can_decide=session.principal.allows("feedback"), attrs_for=attrs_for or "",
        attrs_path=snap.path_text(attrs_for, " › ") if attrs_for and attrs_for in snap else "",
        fields=attribute_fields(snap, attrs_for, suggested if values is None else values),
        counterparts=counterparts_of(request, item.category),
        suggested_json=json.dumps(suggested, ensure_ascii=False),
    )


@router.get("/attributes.json")
async def attributes_of(request: Request, session: SessionDep) -> Response:
    """The attributes of ``category`` (inherited ones included) with the allowed values of the
    closed ones: the correct form's fields, rebuilt when the reviewer picks another category."""
    _service(request, session)
    category = request.query_params.get("category", "").strip()[:512]
    return JSONResponse(attributes_json(services(request).tagging.snapshot, category))


@router.get("/item/{item_id}")
async def item_page(item_id: str, request: Request, session: SessionDep) -> Response:
    service = _service(request, session)
    if len(item_id) > MAX_ID:
        raise UIError(404, "Not found", "No such review item.")
    try:
        item = service.get(item_id)
    except ApiError as exc:
        api_call_failed(exc)
    return _item_page(request, session, item)


def next_for(service: ReviewService, principal: Principal) -> str | None:
    """The reviewer's next item: one they already hold, else the most valuable open one,
    claimed for them (so that two reviewers working down the queue never get the same item)."""
    held = service.list_items(statuses=["claimed"], limit=NEIGHBOURHOOD).items
    mine = [i for i in held if i.claim is not None and i.claim.by == principal.key_id]
    if mine:
        return mine[0].id
    claimed = service.claim_next(principal, ClaimRequest(n=1)).items
    return claimed[0].id if claimed else None


def _after_decision(service: ReviewService, principal: Principal, message: str) -> Response:
    following = next_for(service, principal)
    if following is None:
        return redirect("/ui/queue", f"{message} The queue is empty.")
    return redirect(f"/ui/queue/item/{quote(following, safe='')}", message)


@router.post("/next")
async def review_next(request: Request, session: SessionDep) -> Response:
    """Start (or go on) reviewing: the next item, claimed for this reviewer."""
    await checked_form(request, session)
    service = _service(request, session)
    following = next_for(service, session.principal)
    if following is None:
        return redirect("/ui/queue", "Nothing to review.")
    return redirect(f"/ui/queue/item/{quote(following, safe='')}")


def _revision(form: Mapping[str, str]) -> int | None:
    raw = form.get("revision", "").strip()
    return int(raw) if raw.isdigit() and 0 < int(raw) < 2**31 else None


@router.post("/item/{item_id}/{action}")
async def decide(item_id: str, action: str, request: Request, session: SessionDep) -> Response:
    form = await checked_form(request, session)
    service = _service(request, session)
    if action not in ("accept", "skip", "correct") or len(item_id) > MAX_ID:
        raise UIError(404, "Not found", "No such action.")
    note = form.get("note", "").strip()[:2000] or None
    revision = _revision(form)  # what the page showed: a changed item is not decided
    snap = services(request).tagging.snapshot
    values: dict[str, list[str]] | None = None
    try:
        if action == "accept":
            item = service.accept(session.principal, item_id, DecisionRequest(note=note, revision=revision))
            label = "Accepted"
        elif action == "skip":
            item = service.skip(session.principal, item_id, DecisionRequest(note=note, revision=revision))
            label = "Skipped"
        else:
            category = form.get("category", "").strip()
            attrs_for = form.get("attrs_for")
            if attrs_for is not None:  # the form had attribute fields: what they hold is meant ({}: none)
                values = read_attribute_values(form_pairs(request), snap)
                if attrs_for != category and category in snap:
                    # fields made for another category (the script did not rebuild them): show this one's
                    current = service.get(item_id)
                    kept = {k: v for k, v in values.items() if k in {a.id for a in snap.attributes_for(category)}}
                    return _item_page(request, session, current, form=form, values=kept,
                                      notice=f"Check the attribute values of {snap.path_text(category, ' › ')}, then save.")
            try:
                body = CorrectionRequest(category=category, attribute_values=values, note=note, revision=revision)
            except ValidationError as exc:
                current = service.get(item_id)
                return _item_page(request, session, current, status=422, form=form, values=values,
                                  error=f"Not saved: {exc.errors()[0]['msg']}")
            item = service.correct(session.principal, item_id, body)
            label = "Corrected"
    except ApiError as exc:
        if exc.status == 409 and exc.code == "changed":
            current = ReviewItemOut.model_validate(exc.current) if exc.current else service.get(item_id)
            return _item_page(
                request, session, current, status=409,
                notice="This product was flagged again while you were looking at it, with a new suggestion "
                "(shown below). Nothing was saved: review it and decide again.",
            )
        if exc.status in (409, 422):
            try:
                current = service.get(item_id)
            except ApiError:
                api_call_failed(exc)
            return _item_page(request, session, current, status=exc.status, error=f"Not saved: {exc.message}",
                              form=form, values=values)
        api_call_failed(exc)
    title = item.product.title[:60]
    return _after_decision(service, session.principal, f"{label}: {title}.")
