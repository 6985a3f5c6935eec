"""The review queue's service: list, claim, decide, export; the Python interface of the queue
(the HTTP router and the web UI both call it).

Who: every method that changes an item takes the caller's :class:`~serve.api.auth.Principal`
(its key id and name are recorded with the claim or the decision, with the time).

Deciding: ``accept`` and ``correct`` go through :meth:`FeedbackService.submit
<serve.api.feedback.service.FeedbackService.submit>`, exactly as ``POST /v1/feedback``: the
category (and attribute values) are validated against the current taxonomy (422), the
product becomes (or updates) an example of the index, a new index generation is published
(the next tag of that product, and of similar ones, uses it) and the decision is in the
feedback log, so it counts toward the next retraining and recalibration. The order keeps an
item never half-decided: the decider first holds the item's claim (of two deciders exactly
one does; the other gets 409), then the feedback is applied, then the item's decision is
written in one transaction. A crash between the two leaves the item claimed (its claim
expires, or the same reviewer decides it again), and deciding it again is idempotent: the
example is keyed by the product id (or the item id for a product without one) and the
feedback record by the item id and revision (:func:`feedback_id_for`), so the retry replaces
both instead of adding a second example or a second record to the feedback log.

Deciding on what the reviewer saw: items carry a ``revision`` (a re-enqueue of the product
while it waits, even while claimed, replaces its result and increments it). Accept, correct
and skip take the revision the reviewer saw; when the item has changed since, nothing is
decided: 409 ``changed`` with the current item in ``error.current``. The decision itself is
always written conditionally on the revision that was read, so an accept never records a
suggestion that changed between the check and the write. (Were the product flagged again in the moment
between the claim and that write, the feedback on what the reviewer saw is already applied;
the answer is still 409 ``changed`` and the item waits with its new suggestion.)

Errors are :class:`~serve.api.errors.ApiError`: 404 ``not_found``; 409 ``claimed`` (someone
else holds it), ``already_decided``, ``not_claimed`` (release), ``nothing_to_accept`` (no
suggested category), ``changed`` (not at the revision the reviewer saw; ``error.current``
holds the item as it is now); 422 ``invalid_tags`` / ``invalid_attribute_values`` (feedback's),
``unknown_category`` (a filter naming no node of the taxonomy), ``invalid_status``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import TypeVar

from agent.contract import Product, TagResult
from serve.api.auth import Principal
from serve.api.errors import ApiError, ErrorDetail
from serve.api.feedback.protocol import AttributeValues, FeedbackRequest
from serve.api.feedback.service import FeedbackService
from serve.api.review.protocol import (
    ClaimedItems,
    ClaimOut,
    ClaimRequest,
    CorrectionRequest,
    DecisionOut,
    DecisionRequest,
    ReviewEventOut,
    ReviewHistory,
    ReviewItemOut,
    ReviewPage,
    ReviewStatsOut,
)
from serve.review import (
    PENDING,
    STATUSES,
    Conflict,
    NotFound,
    ReviewEnqueuer,
    ReviewItem,
    ReviewStore,
    Status,
    class_support,
    flagged_entries,
)
from serve.settings import ReviewSettings
from serve.tagging_state import TaggingState

log = logging.getLogger("tagsmith.review")
T = TypeVar("T")


def item_out(item: ReviewItem) -> ReviewItemOut:
    """The API's view of a store item (effective status: an expired claim is open)."""
    claim = item.claim_held()
    d = item.decision
    return ReviewItemOut(
        id=item.id, status=item.effective_status(), source=item.source,
        product=Product.model_construct(**item.product),
        result=TagResult.model_validate(item.result), category=item.category, confidence=item.confidence,
        reasons=item.reasons, taxonomy_version=item.taxonomy_version, index_generation=item.index_generation,
        times_enqueued=item.times_enqueued, created_at=item.created_at, changed_at=item.changed_at,
        claim=ClaimOut(by=claim.by, by_name=claim.by_name, until=claim.until) if claim else None,
        decision=DecisionOut(
            verdict=d.verdict, by=d.by, by_name=d.by_name, at=d.at, category=d.category,
            attribute_values=d.attribute_values, note=d.note, feedback_id=d.feedback_id,
        ) if d else None,
        revision=item.revision,
    )


def feedback_id_for(item_id: str, revision: int) -> str:
    """The feedback record id of a decision on this revision of an item: deterministic, so
    a decision retried after a crash replaces its record instead of adding a second one."""
    return "fb_" + hashlib.sha256(f"review:{item_id}:{revision}".encode()).hexdigest()[:20]


def _store_call(call: Callable[[], T]) -> T:
    try:
        return call()
    except NotFound as exc:
        raise ApiError(404, "not_found", f"no review item {exc.args[0]!r}") from exc
    except Conflict as exc:
        current = item_out(exc.item).model_dump(mode="json") if exc.code == "changed" else None
        raise ApiError(409, exc.code, exc.message, current=current) from exc


class ReviewService:
    def __init__(
        self, store: ReviewStore, feedback: FeedbackService, tagging: TaggingState, settings: ReviewSettings,
        enqueuer: ReviewEnqueuer | None = None,
    ) -> None:
        """``enqueuer``: the background writer of :meth:`enqueue` (None: nothing is enqueued)."""
        self.store = store
        self.feedback = feedback
        self.tagging = tagging
        self.settings = settings
        self.enqueuer = enqueuer
        self._support: tuple[object, dict[str, int]] | None = None

    # ---- entering the queue ------------------------------------------------------------
    def wanted(self, review: bool | None) -> bool:
        """Whether a request's flagged results are enqueued: its ``?review=``, else the setting."""
        return self.settings.enqueue if review is None else review

    def enqueue(self, products: Sequence[Product], results: Sequence[TagResult], source: str) -> int:
        """Hand the flagged ones of ``results`` to the background writer; never blocks, never
        raises (a failure is logged: the tags are returned regardless). Returns how many
        were handed over."""
        if self.enqueuer is None:
            return 0
        try:
            entries = flagged_entries(products, results, source, self.tagging.current.index_generation)
            return self.enqueuer.submit(entries)
        except Exception:
            log.exception("could not enqueue flagged results for review")
            return 0

    # ---- reading -----------------------------------------------------------------------
    def _class_support(self) -> tuple[dict[str, int], object]:
        """Tagged examples per category in the current index (cached per index generation)."""
        view = self.tagging.current
        key: object = (view.index_generation, id(view.index))
        cached = self._support
        if cached is None or cached[0] != key:
            cached = (key, class_support(ex.tags for ex in view.index))
            self._support = cached
        return cached[1], key

    def _categories(self, category: str | None) -> set[str] | None:
        if category is None:
            return None
        snap = self.tagging.snapshot
        if category not in snap:
            raise ApiError(422, "unknown_category", f"{category!r} is not a node of taxonomy version {snap.version}",
                           details=[ErrorDetail(loc=["query", "category"], message="unknown node", type="unknown_category")])
        return {category, *snap.descendants(category)}

    @staticmethod
    def _statuses(statuses: Collection[str] | None) -> list[Status]:
        if not statuses:
            return list(PENDING)
        bad = [s for s in statuses if s not in STATUSES]
        if bad:
            raise ApiError(422, "invalid_status", f"unknown status {bad[0]!r}: use {', '.join(STATUSES)}")
        return [s for s in STATUSES if s in statuses]

    def list_items(
        self, *, statuses: Collection[str] | None = None, category: str | None = None, reason: str | None = None,
        offset: int = 0, limit: int = 50,
    ) -> ReviewPage:
        """A page of the queue. ``statuses`` (default open and claimed: the queue) are
        effective ones; ``category``: the suggested (pending) or final (decided) category is
        this node or below it; ``reason``: flagged for it. Pending items in review order
        (:func:`agent.review_priority.order_for_review`), then decided ones, newest first."""
        support, key = self._class_support()
        items, total = self.store.list_items(
            statuses=self._statuses(statuses), categories=self._categories(category), reason=reason,
            offset=offset, limit=limit, class_support=support, support_key=key,
        )
        return ReviewPage(items=[item_out(i) for i in items], total=total, offset=offset, limit=limit)

    def get(self, item_id: str) -> ReviewItemOut:
        """One item (404 ``not_found``)."""
        return item_out(_store_call(lambda: self.store.get(item_id)))

    def history(self, item_id: str) -> ReviewHistory:
        """Who claimed, released and decided the item, when (404 ``not_found``)."""
        _store_call(lambda: self.store.get(item_id))
        events = [
            ReviewEventOut(action=e["action"], by=e["actor"], by_name=e["actor_name"], at=e["at"], detail=e["detail"])
            for e in self.store.events(item_id)
        ]
        return ReviewHistory(item_id=item_id, events=events)

    def stats(self) -> ReviewStatsOut:
        """Open and claimed counts, pending items by reason, decisions today."""
        s = self.store.stats()
        return ReviewStatsOut(
            open=s.open, claimed=s.claimed, open_by_reason=s.open_by_reason, decided_today=s.decided_today,
            decided_total=s.decided_total, oldest_pending_at=s.oldest_pending_at,
        )

    def export(self, statuses: Collection[str] | None = None) -> Iterator[bytes]:
        """Every item of these statuses (default: all), oldest first, one JSON line each
        (:class:`ReviewItemOut`), read from the store a page at a time."""
        wanted = self._statuses(statuses) if statuses else list(STATUSES)  # 422 before streaming
        return (export_line(item).encode() for item in self.store.iter_items(statuses=wanted))

    # ---- claims ------------------------------------------------------------------------
    def claim(self, principal: Principal, item_id: str) -> ReviewItemOut:
        """Claim one item for review.settings.claim_ttl_s (again: extends one's own claim);
        409 ``claimed`` when someone else holds it, ``already_decided``; 404."""
        return item_out(_store_call(lambda: self.store.claim(
            item_id, principal.key_id, principal.name, ttl_s=self.settings.claim_ttl_s,
        )))

    def claim_next(self, principal: Principal, request: ClaimRequest) -> ClaimedItems:
        """Claim up to ``request.n`` (at most review.max_claim) open items, most valuable
        first; concurrent reviewers never get the same item."""
        n = min(request.n, self.settings.max_claim)
        support, key = self._class_support()
        items = self.store.claim_next(
            n, principal.key_id, principal.name, ttl_s=self.settings.claim_ttl_s,
            categories=self._categories(request.category), reason=request.reason,
            class_support=support, support_key=key,
        )
        return ClaimedItems(items=[item_out(i) for i in items])

    def release(self, principal: Principal, item_id: str) -> ReviewItemOut:
        """Give a claim back (an admin may release anyone's); 409 ``not_claimed``, ``claimed``
        (someone else's), ``already_decided``; 404."""
        return item_out(_store_call(lambda: self.store.release(
            item_id, principal.key_id, principal.name, force=principal.is_admin,
        )))

    # ---- decisions ---------------------------------------------------------------------
    def accept(self, principal: Principal, item_id: str, request: DecisionRequest | None = None) -> ReviewItemOut:
        """The suggested category and attribute values are right: they become an example (as
        POST /v1/feedback with verdict accept). 409 ``nothing_to_accept`` without a suggestion."""
        revision = request.revision if request else None
        item = _store_call(lambda: self.store.check_decidable(item_id, principal.key_id, expected_revision=revision))
        tags = item.result.get("tags") or []
        if not tags:
            raise ApiError(409, "nothing_to_accept", f"review item {item_id} has no suggested category: correct it or skip it")
        values: AttributeValues = {
            a["attribute"]: [v["value_id"] or v["value"] for v in a["values"]] for a in item.result.get("attributes") or []
        }
        note = request.note if request else None
        return self._decide(principal, item, "accepted", tags[0]["id"], values, note)

    def correct(self, principal: Principal, item_id: str, request: CorrectionRequest) -> ReviewItemOut:
        """The right category (and attribute values): validated against the current taxonomy
        (422), then an example (as POST /v1/feedback with verdict correct)."""
        item = _store_call(lambda: self.store.check_decidable(
            item_id, principal.key_id, expected_revision=request.revision,
        ))
        return self._decide(principal, item, "corrected", request.category, request.attribute_values, request.note)

    def skip(self, principal: Principal, item_id: str, request: DecisionRequest | None = None) -> ReviewItemOut:
        """Take the item out of the queue without teaching anything (a later flag of the same
        product enqueues it again)."""
        note = request.note if request else None
        revision = request.revision if request else None
        return item_out(_store_call(lambda: self.store.decide(
            item_id, principal.key_id, principal.name, "skipped", note=note, expected_revision=revision,
        )))

    def _decide(
        self, principal: Principal, item: ReviewItem, verdict: str, category: str,
        values: AttributeValues | None, note: str | None,
    ) -> ReviewItemOut:
        held_before = item.claim_held() is not None
        # hold the claim while deciding: of two deciders exactly one gets past this line
        _store_call(lambda: self.store.claim(item.id, principal.key_id, principal.name, ttl_s=self.settings.claim_ttl_s))
        product = Product.model_validate(item.product)
        if not product.id:  # a stable example id: deciding again updates, never duplicates
            product = product.model_copy(update={"id": item.id})
        try:
            record = self.feedback.submit(principal, FeedbackRequest(
                product=product, verdict="accept" if verdict == "accepted" else "correct",
                tags=[category], attribute_values=values, note=note,
            ), record_id=feedback_id_for(item.id, item.revision))
        except BaseException:
            if not held_before:  # a refused decision does not leave the item claimed
                with contextlib.suppress(Conflict, NotFound):
                    self.store.release(item.id, principal.key_id, principal.name)
            raise
        return item_out(_store_call(lambda: self.store.decide(
            item.id, principal.key_id, principal.name, "accepted" if verdict == "accepted" else "corrected",
            category=category, attribute_values=record.attribute_values, note=note, feedback_id=record.id,
            expected_revision=item.revision,  # what was read (and shown) is what is decided
        )))


def export_line(item: ReviewItem) -> str:
    """One export line (the CLI writes the same lines as the API)."""
    return json.dumps(item_out(item).model_dump(mode="json"), ensure_ascii=False) + "\n"
