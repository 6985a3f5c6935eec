"""Crosswalks: list, import, edit (If-Match), counterparts of a node, rows broken by taxonomy
edits. The logic is :class:`taxonomy.crosswalk_catalog.CrosswalkCatalog`'s; this maps it to
the API's models and its documented errors."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from agent.contract import CrosswalkTag
from serve.api.auth import Principal
from serve.api.crosswalks.protocol import (
    BrokenPage,
    CounterpartOut,
    CrosswalkDetail,
    CrosswalkEditRequest,
    CrosswalkImportRequest,
    CrosswalkList,
    CrosswalkSummary,
    CrosswalkVersions,
    CrosswalkWriteResult,
    NodeRef,
    RowPage,
    SourcesOut,
)
from serve.api.errors import ApiError
from serve.api.taxonomy.service import parse_if_match
from serve.sqlite import utc
from taxonomy import Snapshot, StaleVersion, TaxonomyError, UnknownVersion
from taxonomy.crosswalk import DEFAULT_TAXONOMY, Crosswalk, check_name
from taxonomy.crosswalk_catalog import CrosswalkCatalog, MissingTaxonomy
from taxonomy.crosswalk_store import UnknownCrosswalk
from taxonomy.formats.crosswalk import PublishedMapping, from_published


@contextmanager
def api_errors() -> Iterator[None]:
    """The catalog's errors as the API's documented 4xx."""
    try:
        yield
    except (UnknownCrosswalk, UnknownVersion) as exc:
        raise ApiError(404, "not_found", str(exc)) from exc
    except MissingTaxonomy as exc:
        raise ApiError(409, "taxonomy_missing", str(exc)) from exc
    except StaleVersion as exc:
        raise ApiError(
            412, "precondition_failed",
            f"If-Match names version {exc.expected}, but the crosswalk's current version is {exc.current}: "
            "reload, re-apply your change, and send it with the new ETag",
            headers={"ETag": f'"{exc.current}"'},
        ) from exc
    except TaxonomyError as exc:  # a document that cannot be read as a crosswalk
        raise ApiError(422, "invalid_crosswalk", str(exc)) from exc
    except ValueError as exc:  # a name or row the models refuse
        raise ApiError(422, "invalid_crosswalk", str(exc)) from exc


def _summary(crosswalk: Crosswalk) -> CrosswalkSummary:
    info, doc = crosswalk.info, crosswalk.document
    return CrosswalkSummary(
        name=info.name, version=info.version, title=doc.title, source_taxonomy=doc.source_taxonomy,
        source_label=doc.source_label, target_taxonomy=doc.target_taxonomy, target_label=doc.target_label,
        source_version=info.source_version, target_version=info.target_version, row_count=info.row_count,
        created_at=utc(info.created_at), author=info.author, message=info.message, source=doc.source, note=doc.note,
    )


def _ref(snap: Snapshot, node_id: str) -> NodeRef:
    node = snap.node(node_id)
    return NodeRef(id=node_id, name=node.name, path=list(snap.path_names(node_id)), deprecated=node.deprecated)


def _name(name: str) -> str:
    try:
        return check_name(name)
    except ValueError as exc:
        raise ApiError(422, "validation_error", str(exc)) from exc


class CrosswalkService:
    def __init__(self, catalog: CrosswalkCatalog) -> None:
        self.catalog = catalog

    def list_all(self) -> CrosswalkList:
        return CrosswalkList(items=[_summary(c) for c in self.catalog])

    def detail(self, name: str, version: int | None = None) -> CrosswalkDetail:
        with api_errors():
            crosswalk = self.catalog.get(name, version)
            report = self.catalog.report(name, version)
        return CrosswalkDetail(**_summary(crosswalk).model_dump(), report=report)

    def versions(self, name: str) -> CrosswalkVersions:
        with api_errors():
            items = self.catalog.store.versions(name)
        return CrosswalkVersions(items=[i.model_copy(update={"created_at": utc(i.created_at)}) for i in items])

    def rows(self, name: str, offset: int, limit: int, version: int | None = None) -> RowPage:
        with api_errors():
            crosswalk = self.catalog.get(name, version)
        rows = crosswalk.document.rows
        return RowPage(
            crosswalk_version=crosswalk.version, items=list(rows[offset : offset + limit]), total=len(rows),
            offset=offset, limit=limit,
        )

    def import_(
        self, principal: Principal, name: str, request: CrosswalkImportRequest, if_match: str | None
    ) -> CrosswalkWriteResult:
        """A new version of ``name`` (created when new) from a published mapping. If-Match is
        optional here (a whole new version replaces the rows): when sent, it is checked."""
        _name(name)
        expected = None if if_match is None else parse_if_match(if_match)
        with api_errors():
            document = request.crosswalk
            if isinstance(document, PublishedMapping):
                document = from_published(document, target_taxonomy=request.target_taxonomy)
            elif request.target_taxonomy is not None:
                document = document.model_copy(update={"target_taxonomy": request.target_taxonomy})
            previous = self.catalog.store.head(name)
            crosswalk, report = self.catalog.import_crosswalk(
                name, document, expected_version=expected, author=principal.name,
                message=request.message or "import",
            )
        return CrosswalkWriteResult(name=name, version=crosswalk.version, previous_version=previous, report=report)

    def edit(
        self, principal: Principal, name: str, request: CrosswalkEditRequest, if_match: str | None
    ) -> CrosswalkWriteResult:
        expected = parse_if_match(if_match)  # 428 without If-Match: two editors must not overwrite each other
        with api_errors():
            if self.catalog.store.head(name) == 0:
                raise UnknownCrosswalk(f"no crosswalk {name!r}")
            crosswalk, report = self.catalog.edit(
                name, request.edits, expected_version=expected, author=principal.name, message=request.message,
            )
        return CrosswalkWriteResult(
            name=name, version=crosswalk.version, previous_version=crosswalk.version - 1, report=report
        )

    def counterpart(self, node_id: str, crosswalk: str | None = None, *, fallback: bool = True) -> CounterpartOut:
        """Where source node ``node_id`` lands in crosswalk ``crosswalk``'s target taxonomy
        (default: the first crosswalk, by name, from the tagging taxonomy). 404: no such
        crosswalk (or none at all), or no such node in the source taxonomy; 409: the
        crosswalk's taxonomy is not imported."""
        if crosswalk is None:
            crosswalk = next(iter(self._from_tagging_taxonomy()), None)
            if crosswalk is None:
                raise ApiError(404, "not_found", "no crosswalk from the tagging taxonomy: import one first")
        with api_errors():
            resolved, found = self.catalog.counterpart(crosswalk, node_id, fallback=fallback)
        if node_id not in resolved.source:
            raise ApiError(404, "not_found", f"no node {node_id!r} in version {resolved.source.version} "
                           f"of taxonomy {resolved.crosswalk.document.source_taxonomy!r}")
        target = resolved.target
        row = resolved.crosswalk.rows.get(node_id)
        return CounterpartOut(
            crosswalk=resolved.crosswalk.name, crosswalk_version=resolved.crosswalk.version,
            taxonomy=resolved.crosswalk.document.target_taxonomy, version=target.version,
            node=_ref(resolved.source, node_id), row=None if row is None else list(row.target_ids),
            status=found.status, source_id=found.source_id, reason=found.reason,
            targets=[CrosswalkTag(id=t, name=target.node(t).name, path=list(target.path_names(t)))
                     for t in found.target_ids],
        )

    def counterparts(self, node_id: str, *, fallback: bool = True) -> list[CounterpartOut]:
        """``node_id``'s counterparts in every crosswalk from the tagging taxonomy whose
        target taxonomy is present (what a node's page shows)."""
        out: list[CounterpartOut] = []
        for name in self._from_tagging_taxonomy():
            try:
                out.append(self.counterpart(node_id, name, fallback=fallback))
            except ApiError as exc:
                if exc.status == 409:  # its target taxonomy is missing: nothing to show
                    continue
                raise
        return out

    def _from_tagging_taxonomy(self) -> list[str]:
        return [
            name for name in self.catalog.names()
            if self.catalog.get(name).document.source_taxonomy == DEFAULT_TAXONOMY
        ]

    def sources(self, name: str, target_id: str) -> SourcesOut:
        """The source nodes mapped to target node ``target_id``."""
        with api_errors():
            resolved = self.catalog.resolve(name)
        if target_id not in resolved.target:
            raise ApiError(404, "not_found", f"no node {target_id!r} in taxonomy "
                           f"{resolved.crosswalk.document.target_taxonomy!r}")
        ids = resolved.crosswalk.by_target.get(target_id, ())
        return SourcesOut(
            crosswalk=name, crosswalk_version=resolved.crosswalk.version, target=_ref(resolved.target, target_id),
            sources=[_ref(resolved.source, s) for s in ids if s in resolved.source],
            unknown_sources=[s for s in ids if s not in resolved.source],
        )

    def broken(self, name: str, source_version: int | None, offset: int, limit: int) -> BrokenPage:
        with api_errors():
            crosswalk = self.catalog.get(name)
            rows = self.catalog.broken(name, source_version)
            source = self.catalog.taxonomy(crosswalk.document.source_taxonomy, source_version)
            target = self.catalog.taxonomy(crosswalk.document.target_taxonomy)
        return BrokenPage(
            crosswalk=name, crosswalk_version=crosswalk.version,
            checked_source_version=crosswalk.info.source_version, source_version=source.version,
            target_version=target.version, counts=dict(Counter(r.reason for r in rows)),
            items=rows[offset : offset + limit], total=len(rows), offset=offset, limit=limit,
        )
