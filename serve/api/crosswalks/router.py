"""Crosswalk endpoints: read (any valid key), import and edit (scope taxonomy:write)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response

from agent.contract import NOT_BLANK
from serve.api.auth import AnyKey, TaxonomyWriteScope
from serve.api.crosswalks.protocol import (
    BrokenPage,
    CounterpartOut,
    CrosswalkDetail,
    CrosswalkEditRequest,
    CrosswalkImportRequest,
    CrosswalkList,
    CrosswalkVersions,
    CrosswalkWriteResult,
    RowPage,
    SourcesOut,
)
from serve.api.deps import CrosswalkServiceDep
from serve.api.errors import ERRORS, errors
from taxonomy.crosswalk import NAME_HELP, NAME_RE

router = APIRouter(prefix="/v1/crosswalks", tags=["crosswalks"])
Name = Annotated[str, Path(
    min_length=1, max_length=64, pattern=NAME_RE.pattern, description=f"the crosswalk's name, e.g. google: {NAME_HELP}",
)]
NodeId = Annotated[str, Path(min_length=1, max_length=512, pattern=NOT_BLANK)]  # blank ids are stripped to ""
PinnedVersion = Annotated[int | None, Query(ge=1, le=2**31 - 1, description="a stored version (default: current)")]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
Limit = Annotated[int, Query(ge=1, le=1000)]
_ETAG = {"ETag": {"description": 'the crosswalk version, e.g. "3": send it back as If-Match to edit', "schema": {"type": "string"}}}
_409: dict[int | str, dict[str, Any]] = {409: {
    **ERRORS[409], "description": "`taxonomy_missing`: the crosswalk's source or target taxonomy holds no version "
    "yet (import it: `tagsmith crosswalk import-taxonomy`)",
}}
_WRITE_422: dict[int | str, dict[str, Any]] = {422: {
    **ERRORS[422], "description": "invalid request (details say where); `invalid_crosswalk`: the document "
    "is not a crosswalk in either accepted form",
}}


@router.get("", response_model=CrosswalkList, responses=errors(503), summary="Every crosswalk, at its current version.")
def list_crosswalks(service: CrosswalkServiceDep, _: AnyKey) -> CrosswalkList:
    return service.list_all()


@router.get(
    "/{name}", response_model=CrosswalkDetail, responses={200: {"headers": _ETAG}, **errors(404, 503), **_409},
    summary="One crosswalk, checked against the current versions of both taxonomies (ETag: its version).",
)
def get_crosswalk(name: Name, response: Response, service: CrosswalkServiceDep, _: AnyKey,
                  version: PinnedVersion = None) -> CrosswalkDetail:
    detail = service.detail(name, version)
    response.headers["ETag"] = f'"{detail.version}"'
    return detail


@router.put(
    "/{name}", status_code=201, response_model=CrosswalkWriteResult,
    responses={201: {"headers": _ETAG}, **errors(412, 503), **_409, **_WRITE_422},
    summary="Import a published mapping as the next version of crosswalk `name` (created when new).",
    description="The body's `crosswalk` is Shopify's published form (`input_taxonomy`, `output_taxonomy`, "
    "`mapping`: short id → [target ids]) or our own (`target_taxonomy`, `rows`). The target taxonomy "
    "must have been imported. Rows whose ids are unknown to either taxonomy are kept and listed in the "
    "report, never dropped. `If-Match` is optional; when sent, 412 if it is not the current version.",
)
def import_crosswalk(
    name: Name, body: CrosswalkImportRequest, response: Response, service: CrosswalkServiceDep,
    principal: TaxonomyWriteScope,
    if_match: Annotated[str | None, Header(alias="If-Match", max_length=100)] = None,
) -> CrosswalkWriteResult:
    result = service.import_(principal, name, body, if_match)
    response.headers["ETag"] = f'"{result.version}"'
    return result


@router.post(
    "/{name}/edits", status_code=201, response_model=CrosswalkWriteResult,
    responses={201: {"headers": _ETAG}, **errors(404, 412, 428, 503), **_409},
    summary="Set or remove rows, all-or-nothing, on the version named by If-Match.",
    description="An edit `{\"source_id\": …, \"target_ids\": [...]}` sets a row (`[]`: the node has no "
    "counterpart); `\"target_ids\": null` removes it. 412 when If-Match is not the current version.",
)
def edit_crosswalk(
    name: Name, body: CrosswalkEditRequest, response: Response, service: CrosswalkServiceDep,
    principal: TaxonomyWriteScope,
    if_match: Annotated[str | None, Header(alias="If-Match", max_length=100)] = None,
) -> CrosswalkWriteResult:
    result = service.edit(principal, name, body, if_match)
    response.headers["ETag"] = f'"{result.version}"'
    return result


@router.get("/{name}/versions", response_model=CrosswalkVersions, responses=errors(404, 503),
            summary="Every version of a crosswalk, oldest first.")
def crosswalk_versions(name: Name, service: CrosswalkServiceDep, _: AnyKey) -> CrosswalkVersions:
    return service.versions(name)


@router.get("/{name}/rows", response_model=RowPage, responses=errors(404, 503), summary="The rows, paginated.")
def crosswalk_rows(name: Name, service: CrosswalkServiceDep, _: AnyKey, offset: Offset = 0, limit: Limit = 100,
                   version: PinnedVersion = None) -> RowPage:
    return service.rows(name, offset, limit, version)


@router.get(
    "/{name}/broken", response_model=BrokenPage, responses={**errors(404, 503), **_409},
    summary="Rows broken by edits of the source taxonomy (removed, deprecated, merged, moved) or of the target.",
    description="Computed for any stored source version (`source_version`, default: the newest), "
    "compared with the version the crosswalk was last checked against; `suggestion` is the id the "
    "node's tags migrate to (merges and replacements).",
)
def broken_rows(
    name: Name, service: CrosswalkServiceDep, _: AnyKey,
    source_version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None, offset: Offset = 0, limit: Limit = 100,
) -> BrokenPage:
    return service.broken(name, source_version, offset, limit)


@router.get(
    "/{name}/nodes/{node_id:path}", response_model=CounterpartOut, responses={**errors(404, 503), **_409},
    summary="A source node's counterpart(s) in the target taxonomy (ids may contain '/').",
    description="`fallback=true` (default): a node without a usable row of its own gets its nearest "
    "mapped ancestor's targets, with status `ancestor`.",
)
def counterpart(name: Name, node_id: NodeId, service: CrosswalkServiceDep, _: AnyKey,
                fallback: bool = True) -> CounterpartOut:
    return service.counterpart(node_id, name, fallback=fallback)


@router.get(
    "/{name}/targets/{target_id:path}", response_model=SourcesOut, responses={**errors(404, 503), **_409},
    summary="The source nodes whose rows map to one target node.",
)
def sources(name: Name, target_id: NodeId, service: CrosswalkServiceDep, _: AnyKey) -> SourcesOut:
    return service.sources(name, target_id)
