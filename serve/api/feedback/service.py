"""Feedback: validate the reviewer's tags (and attribute values), record the verdict, add the
example to the index.

The example index is changed copy-on-write and published as a new generation (see
:meth:`serve.tagging_state.TaggingState.update_index`), so the next similar product is tagged
with the corrected example among its neighbours, without a restart or a retraining run; the
attribute extractor is refitted on the new generation (at once for a small labelled pool,
else in the background), so corrected attribute values are learned the same way.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from retrieval import CachedEmbedder, Example, ExampleIndex, text_of
from serve.api.auth import Principal
from serve.api.errors import ApiError, ErrorDetail
from serve.api.feedback.protocol import (
    AttributeValues,
    ExampleOut,
    ExamplePage,
    FeedbackList,
    FeedbackOut,
    FeedbackRequest,
)
from serve.attribute_selection import fold_name
from serve.feedback import FeedbackRecord, FeedbackStore
from serve.tagging_state import TaggingState
from taxonomy import AttributeAssignment, ProposedTag, Snapshot, TagValidator


def _example_out(ex: Example) -> ExampleOut:
    return ExampleOut(
        id=ex.id, title=ex.title, description=ex.description, tags=list(ex.tags),
        attributes=dict(ex.attributes), category_text=ex.category_text,
        attribute_values={k: list(v) for k, v in ex.attribute_values.items()},
    )


def _feedback_out(r: FeedbackRecord) -> FeedbackOut:
    return FeedbackOut(
        id=r.id, example_id=r.example_id, verdict=r.verdict,  # type: ignore[arg-type]
        tags=r.tags, reviewer=r.reviewer, taxonomy_version=r.taxonomy_version,
        index_generation=r.index_generation, created_at=r.created_at, note=r.note,
        attribute_values=r.attribute_values,
    )


def _as_ids(snap: Snapshot, category: str, given: AttributeValues) -> dict[str, tuple[str, ...]]:
    """Attribute id -> values, blank ends stripped, duplicates dropped: an attribute given by
    the name of one of ``category``'s attributes, and a closed attribute's value given by its
    name (case-insensitive), replaced by their ids (what is not found is left for the
    validator to name)."""
    by_attr_name = {fold_name(a.name): a.id for a in snap.attributes_for(category)} if category in snap else {}
    out: dict[str, tuple[str, ...]] = {}
    for key, raw in given.items():
        attr_id = key if key in snap.attributes else by_attr_name.get(fold_name(key), key)
        values = [v.strip() for v in ([raw] if isinstance(raw, str) else raw)]
        attr = snap.attributes.get(attr_id)
        if attr is not None and attr.closed:
            by_name = {fold_name(v.name): v.id for v in attr.values if v.active}
            values = [v if attr.value(v) is not None else by_name.get(fold_name(v), v) for v in values]
        out[attr_id] = tuple(dict.fromkeys([*out.get(attr_id, ()), *values]))
    return out


def _kept(snap: Snapshot, category: str, old: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """An example's earlier values that still apply to ``category``."""
    applicable = {a.id for a in snap.attributes_for(category)}
    return {k: v for k, v in old.items() if k in applicable}


class FeedbackService:
    def __init__(self, tagging: TaggingState, embedder: CachedEmbedder, store: FeedbackStore) -> None:
        self.tagging = tagging
        self.embedder = embedder
        self.store = store
        self.validator = TagValidator(leaf_only=True)

    def submit(self, principal: Principal, request: FeedbackRequest, *, record_id: str | None = None) -> FeedbackOut:
        """Validate, add the example, log the record. ``record_id``: a deterministic record id
        (the review queue's): submitting again with it replaces that record instead of adding one."""
        snap = self.tagging.snapshot
        values = _as_ids(snap, request.tags[0], request.attribute_values or {})
        first = ProposedTag(id=request.tags[0], attributes=tuple(
            AttributeAssignment(attribute=k, values=v) for k, v in values.items()
        ))
        report = self.validator.validate(snap, [first, *request.tags[1:]])
        category_errors = [e for e in report.errors if e.attribute is None]
        if category_errors:
            details = [
                ErrorDetail(
                    loc=["body", "tags", e.index], type=e.rule,
                    message=e.message + (f" (did you mean {e.suggestion!r}?)" if e.suggestion else ""),
                )
                for e in category_errors
            ]
            raise ApiError(
                422, "invalid_tags",
                f"tags must be active leaf categories of taxonomy version {snap.version}: "
                f"{details[0].message}",
                details=details,
            )
        if report.errors:
            details = [
                ErrorDetail(
                    loc=["body", "attribute_values", e.attribute or ""], type=e.rule,
                    message=e.message + (f" (did you mean {e.suggestion!r}?)" if e.suggestion else ""),
                )
                for e in report.errors
            ]
            raise ApiError(
                422, "invalid_attribute_values",
                f"attribute values must be allowed values of the attributes of {request.tags[0]!r} at "
                f"taxonomy version {snap.version}: {details[0].message}",
                details=details,
            )
        product = request.product
        example_id = product.id or f"fb_{secrets.token_hex(8)}"
        if request.attribute_values is None:
            earlier = self.tagging.current.index.get(example_id)
            values = _kept(snap, request.tags[0], earlier.attribute_values) if earlier is not None else {}
        example = Example(
            id=example_id, title=product.title,
            description=product.description, tags=tuple(dict.fromkeys(request.tags)),
            attributes=dict(product.attributes), category_text=product.category_text,
            attribute_values=values,
        )
        vector = self.embedder.encode([example.text()])  # before the index lock: the slow part

        def add(index: ExampleIndex) -> None:
            index.upsert([example], vector)

        _, view = self.tagging.update_index(add)
        record = self.store.add(
            example_id=example.id, verdict=request.verdict, tags=list(example.tags),
            product=product.model_dump(mode="json") | {"id": example.id}, note=request.note,
            reviewer=principal.key_id, taxonomy_version=snap.version,
            index_generation=view.index_generation,
            attribute_values={k: list(v) for k, v in example.attribute_values.items()}, record_id=record_id,
        )
        return _feedback_out(record)

    def list_feedback(self, offset: int, limit: int) -> FeedbackList:
        records, total = self.store.list_records(offset=offset, limit=limit)
        return FeedbackList(items=[_feedback_out(r) for r in records], total=total, offset=offset, limit=limit)

    def examples(self, offset: int, limit: int, query: str | None) -> ExamplePage:
        view = self.tagging.current
        examples = list(view.index)
        if query:
            needle = query.casefold()
            examples = [ex for ex in examples if needle in text_of(ex).casefold() or needle in ex.id.casefold()]
        page = examples[offset : offset + limit]
        return ExamplePage(
            items=[_example_out(ex) for ex in page], total=len(examples), offset=offset, limit=limit,
            index_generation=view.index_generation,
        )

    def example(self, example_id: str) -> ExampleOut:
        ex = self.tagging.current.index.get(example_id)
        if ex is None:
            raise ApiError(404, "not_found", f"no example {example_id!r} in the index")
        return _example_out(ex)

    def delete_example(self, example_id: str) -> None:
        if example_id not in self.tagging.current.index:
            raise ApiError(404, "not_found", f"no example {example_id!r} in the index")
        removed, _ = self.tagging.update_index(lambda index: index.delete([example_id]))
        if not removed:  # deleted by a concurrent request between the check and the lock
            raise ApiError(404, "not_found", f"no example {example_id!r} in the index")
