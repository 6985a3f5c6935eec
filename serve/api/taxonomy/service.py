"""Reading and editing the taxonomy; a published edit is swapped into the tagging state."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy.exc import OperationalError

from serve.api.auth import Principal
from serve.api.errors import ApiError, ErrorDetail, retry_after
from serve.api.limits import RateLimiter
from serve.api.taxonomy.protocol import (
    AttributeOut,
    AttributePage,
    EditRequest,
    EditResult,
    MigrationMap,
    NodeDetail,
    NodeOut,
    NodePage,
    SearchResults,
    TaxonomyInfo,
    VersionDetail,
    VersionList,
)
from serve.database import is_unavailable
from serve.settings import LimitSettings
from serve.sqlite import utc
from serve.tagging_state import TaggingState
from taxonomy import (
    Attribute,
    EditRejected,
    Snapshot,
    StaleVersion,
    TaxonomyDiff,
    TaxonomyStore,
    UnknownVersion,
    VersionInfo,
    diff_snapshots,
    search,
)

T = TypeVar("T")


def parse_if_match(value: str | None) -> int | None:
    """The version an ``If-Match`` names (``"3"``, ``W/"3"`` or ``3``); None for ``*``."""
    if value is None:
        raise ApiError(
            428, "precondition_required",
            'edits need If-Match: "<version>" (the ETag of GET /v1/taxonomy), so that two editors '
            "cannot overwrite each other",
        )
    text = value.strip()
    if text == "*":
        return None
    text = text.removeprefix("W/").strip('"')
    if not text.isdigit():
        raise ApiError(412, "precondition_failed", f"If-Match {value!r} is not a taxonomy version ETag such as \"3\"")
    return int(text)


def _node(snap: Snapshot, node_id: str) -> NodeOut:
    node = snap.node(node_id)
    return NodeOut(
        id=node.id, name=node.name, parent=node.parent, level=node.level,
        path=list(snap.path_names(node_id)), is_leaf=snap.is_leaf(node_id),
        deprecated=node.deprecated, replaced_by=node.replaced_by, synonyms=list(node.synonyms),
        description=node.description,
    )


def _attachments(snap: Snapshot) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for node in snap.document.nodes:
        for attr_id in node.attributes:
            out.setdefault(attr_id, []).append(node.id)
    return out


def _attribute(attr: Attribute, attached: dict[str, list[str]]) -> AttributeOut:
    return AttributeOut(**dict(attr), attached_at=attached.get(attr.id, []))


def _utc_info(info: VersionInfo) -> VersionInfo:
    return info.model_copy(update={"created_at": utc(info.created_at)})


class TaxonomyService:
    def __init__(self, store: TaxonomyStore, tagging: TaggingState, limits: LimitSettings | None = None) -> None:
        self.store = store
        self.tagging = tagging
        limits = limits or LimitSettings()
        # The CPU a rebuild or comparison took is charged, after the fact, to the caller's own
        # budget of CPU seconds (refilling at limits.history_cpu_share of a core): a request's
        # real cost is unknown up front (a cached version costs nothing, a cold one ~0.3 s),
        # and a budget apart from the request-rate bucket leaves the key's tagging untouched.
        self._cpu = RateLimiter(limits.history_cpu_share, limits.history_cpu_burst_s)
        # Rebuilding an old version or comparing two costs ~0.3 s of CPU on the default
        # taxonomy: bounded across all keys, so such reads cannot occupy the cores (and the
        # threads) that everything else needs. Reads answered from the store's caches skip it.
        self._heavy_slots = threading.BoundedSemaphore(limits.history_reads_at_once)
        self._heavy_at_once = limits.history_reads_at_once
        self._heavy_wait_s = limits.history_wait_s

    @contextmanager
    def _heavy(self, key_id: str | None) -> Iterator[None]:
        wait = 0.0 if key_id is None else self._cpu.acquire(key_id, 0.0)
        if wait > 0:
            raise ApiError(
                429, "rate_limited",
                f"key {key_id} has spent its CPU budget for old-version reads and comparisons "
                f"({self._cpu.rate:g} of a core, burst {self._cpu.burst:g} CPU s: "
                "limits.history_cpu_share / history_cpu_burst_s); cached and current-version reads "
                "still work; retry after the Retry-After seconds",
                headers=retry_after(wait),
            )
        if not self._heavy_slots.acquire(timeout=self._heavy_wait_s):
            raise ApiError(
                503, "overloaded",
                f"{self._heavy_at_once} old-version rebuild(s) or comparison(s) already running "
                "(limits.history_reads_at_once); retry shortly. Reads of the current version are "
                "not affected",
                headers=retry_after(1),
            )
        cpu_start = time.thread_time()  # the work runs in this thread: its CPU, not wall time
        try:
            yield
        finally:
            self._heavy_slots.release()
            if key_id is not None:
                self._cpu.charge(key_id, time.thread_time() - cpu_start)

    def _snapshot(self, version: int | None, key_id: str | None = None) -> Snapshot:
        if version is None:
            try:
                self.store.refresh()  # another process (the CLI) may have published a version
            except OperationalError as exc:
                if not is_unavailable(exc):
                    raise
                # the database is down: the version this replica holds (and tags with) is served
            return self.store.current()
        cached = self.store.cached_snapshot(version)
        if cached is not None:
            return cached
        try:
            with self._heavy(key_id):
                return self.store.snapshot(version)
        except UnknownVersion as exc:
            raise ApiError(404, "not_found", str(exc)) from exc

    def info(self) -> TaxonomyInfo:
        snap = self._snapshot(None)
        doc = snap.document
        return TaxonomyInfo(
            version=snap.version, name=doc.name, source_version=doc.source_version,
            node_count=len(snap), active_count=len(snap.active_ids),
            leaf_count=len(snap.active_leaf_ids), roots=list(snap.roots),
        )

    def nodes(
        self, *, parent: str | None, include_deprecated: bool, version: int | None, offset: int, limit: int,
        key_id: str | None = None,
    ) -> NodePage:
        snap = self._snapshot(version, key_id)
        if parent is not None:
            if parent not in snap:
                raise ApiError(404, "not_found", f"no node {parent!r} in version {snap.version}")
            ids = list(snap.children(parent, include_deprecated=include_deprecated))
        else:
            ids = [n.id for n in snap.document.nodes if include_deprecated or not n.deprecated]
        page = ids[offset : offset + limit]
        return NodePage(
            version=snap.version, items=[_node(snap, i) for i in page], total=len(ids),
            offset=offset, limit=limit,
        )

    def node(self, node_id: str, version: int | None, key_id: str | None = None) -> NodeDetail:
        snap = self._snapshot(version, key_id)
        if node_id not in snap:
            raise ApiError(404, "not_found", f"no node {node_id!r} in version {snap.version}")
        base = _node(snap, node_id)
        return NodeDetail(
            **base.model_dump(), children=list(snap.children(node_id)),
            ancestors=list(snap.ancestors(node_id)),
            attributes=[a.id for a in snap.attributes_for(node_id)],
        )

    def attributes(
        self, *, category: str | None, include_deprecated: bool, version: int | None, offset: int, limit: int,
        key_id: str | None = None,
    ) -> AttributePage:
        snap = self._snapshot(version, key_id)
        if category is not None:
            if category not in snap:
                raise ApiError(404, "not_found", f"no node {category!r} in version {snap.version}")
            attrs = list(snap.attributes_for(category, include_deprecated=include_deprecated))
        else:
            attrs = [a for a in snap.attributes.values() if include_deprecated or not a.deprecated]
        attached = _attachments(snap) if attrs[offset : offset + limit] else {}
        return AttributePage(
            version=snap.version, category=category, total=len(attrs), offset=offset, limit=limit,
            items=[_attribute(a, attached) for a in attrs[offset : offset + limit]],
        )

    def attribute(self, attribute_id: str, version: int | None, key_id: str | None = None) -> AttributeOut:
        snap = self._snapshot(version, key_id)
        attr = snap.attributes.get(attribute_id)
        if attr is None:
            raise ApiError(404, "not_found", f"no attribute {attribute_id!r} in version {snap.version}")
        return _attribute(attr, _attachments(snap))

    def search(self, text: str, limit: int, include_deprecated: bool) -> SearchResults:
        snap = self._snapshot(None)
        hits = search(snap, text, limit=limit, include_deprecated=include_deprecated)
        return SearchResults(version=snap.version, hits=hits)

    def versions(self) -> VersionList:
        return VersionList(items=[_utc_info(v) for v in self.store.versions()])

    def version(self, version: int) -> VersionDetail:
        try:
            info = _utc_info(self.store.version_info(version))
            edits = self.store.edits(version)
        except UnknownVersion as exc:
            raise ApiError(404, "not_found", str(exc)) from exc
        return VersionDetail(**info.model_dump(), edits=edits)

    def _compare(self, kind: str, v1: int, v2: int, compute: Callable[[int, int], T], key_id: str | None) -> T:
        try:
            if self.store.cached_comparison(kind, v1, v2):
                return compute(v1, v2)
            with self._heavy(key_id):
                return compute(v1, v2)
        except UnknownVersion as exc:
            raise ApiError(404, "not_found", str(exc)) from exc

    def diff(self, v1: int, v2: int, key_id: str | None = None) -> TaxonomyDiff:
        return self._compare("diff", v1, v2, self.store.diff, key_id)

    def migration_map(self, v1: int, v2: int, key_id: str | None = None) -> MigrationMap:
        mapping = self._compare("migration_map", v1, v2, self.store.migration_map, key_id)
        # computed and cached together with ``mapping``: answered from memory now
        values = self.store.value_migration_map(v1, v2)
        return MigrationMap(from_version=v1, to_version=v2, mapping=mapping, attribute_values=values)

    def apply(self, principal: Principal, if_match: str | None, request: EditRequest) -> EditResult:
        # None (``*``): RFC 9110 "any current representation", resolved by the store under
        # its write lock, so concurrent ``*`` edits are serialised instead of refused
        expected = parse_if_match(if_match)
        try:
            snap = self.store.apply(
                request.edits, expected_version=expected, author=principal.name, message=request.message
            )
        except StaleVersion as exc:
            named = f"version {expected}" if expected is not None else "any version"
            raise ApiError(
                412, "precondition_failed",
                f"If-Match names {named}, but the current version is {exc.current}: "
                "reload, re-apply your edits, and send them with the new ETag",
                headers={"ETag": f'"{exc.current}"'},
            ) from exc
        except EditRejected as exc:
            loc: list[str | int] = ["body", "edits"] + ([exc.index] if exc.index is not None else [])
            raise ApiError(
                422, "edit_rejected", str(exc), details=[ErrorDetail(loc=loc, message=exc.message, type=exc.code)]
            ) from exc
        previous = snap.version - 1  # the version the batch was actually applied to
        before = self.tagging.snapshot
        # new requests tag against the new version from now on; in-flight ones keep theirs
        self.tagging.use_snapshot(snap)
        if before.version != previous:
            before = self.store.snapshot(previous)
        diff = diff_snapshots(before, snap)
        return EditResult(
            version=snap.version, previous_version=previous,
            changes={k: v for k, v in diff.summary().items() if v},
        )
