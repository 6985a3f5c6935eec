"""Taxonomy endpoints: read (any valid key) and edit (scope taxonomy:write, If-Match)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response

from serve.api.auth import AnyKey, TaxonomyWriteScope
from serve.api.deps import TaxonomyServiceDep
from serve.api.errors import errors
from serve.api.limits import cost_note
from serve.api.taxonomy.protocol import (
    AttributeOut,
    AttributePage,
    EditRequest,
    EditResult,
    MigrationMap,
    NodeDetail,
    NodePage,
    SearchResults,
    TaxonomyInfo,
    VersionDetail,
    VersionList,
)
from taxonomy import TaxonomyDiff

router = APIRouter(prefix="/v1/taxonomy", tags=["taxonomy"])
Version = Annotated[int, Path(ge=1, le=2**31 - 1)]
PinnedVersion = Annotated[int | None, Query(ge=1, le=2**31 - 1, description="read this version (default: current)")]
FromVersion = Annotated[int, Query(alias="from", ge=1, le=2**31 - 1)]
ToVersion = Annotated[int, Query(alias="to", ge=1, le=2**31 - 1)]
_OLD = (
    "Old versions are rebuilt from the edit log and comparisons computed a few at a time across "
    "all keys (cached afterwards): 503 with Retry-After while the server is busy with others. "
    "The CPU such a rebuild takes is charged to a per-key CPU budget (limits.history_cpu_share, "
    "history_cpu_burst_s): 429 with Retry-After once it is spent."
)
_ETAG = {"ETag": {"description": 'the taxonomy version, e.g. "3": send it back as If-Match to edit', "schema": {"type": "string"}}}


@router.get(
    "", response_model=TaxonomyInfo, responses={200: {"headers": _ETAG}, **errors(503)},
    summary="The current taxonomy version and its size (ETag: the version).",
)
def taxonomy_info(response: Response, service: TaxonomyServiceDep, _: AnyKey) -> TaxonomyInfo:
    info = service.info()
    response.headers["ETag"] = f'"{info.version}"'
    return info


@router.get(
    "/nodes", response_model=NodePage, responses=errors(404, 503), summary="Nodes, paginated (document order).",
    description=f"With `version`: {cost_note('/v1/taxonomy/nodes', b'version=1')} {_OLD}",
)
def list_nodes(
    service: TaxonomyServiceDep, principal: AnyKey,
    parent: Annotated[str | None, Query(min_length=1, max_length=512, description="only the children of this node")] = None,
    include_deprecated: bool = False,
    version: PinnedVersion = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> NodePage:
    return service.nodes(
        parent=parent, include_deprecated=include_deprecated, version=version, offset=offset, limit=limit,
        key_id=principal.key_id,
    )


@router.get(
    "/nodes/{node_id:path}", response_model=NodeDetail, responses=errors(404, 503),
    summary="One node with its children, ancestors and attributes (ids may contain '/').",
    description=f"With `version`: {cost_note('/v1/taxonomy/nodes/x', b'version=1')} {_OLD}",
)
def get_node(
    node_id: Annotated[str, Path(min_length=1, max_length=512)], service: TaxonomyServiceDep, principal: AnyKey,
    version: PinnedVersion = None,
) -> NodeDetail:
    return service.node(node_id, version, principal.key_id)


@router.get(
    "/attributes", response_model=AttributePage, responses=errors(404, 503),
    summary="Attribute definitions, paginated: all, or those applicable to one category (own and inherited).",
    description=f"With `version`: {cost_note('/v1/taxonomy/attributes', b'version=1')} {_OLD}",
)
def list_attributes(
    service: TaxonomyServiceDep, principal: AnyKey,
    category: Annotated[str | None, Query(min_length=1, max_length=512, description="only the attributes of this category")] = None,
    include_deprecated: bool = False,
    version: PinnedVersion = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AttributePage:
    return service.attributes(
        category=category, include_deprecated=include_deprecated, version=version, offset=offset, limit=limit,
        key_id=principal.key_id,
    )


@router.get(
    "/attributes/{attribute_id:path}", response_model=AttributeOut, responses=errors(404, 503),
    summary="One attribute: its values, value type, unit, normalization rule and where it is attached.",
    description=f"With `version`: {cost_note('/v1/taxonomy/attributes/x', b'version=1')} {_OLD}",
)
def get_attribute(
    attribute_id: Annotated[str, Path(min_length=1, max_length=512)], service: TaxonomyServiceDep,
    principal: AnyKey, version: PinnedVersion = None,
) -> AttributeOut:
    return service.attribute(attribute_id, version, principal.key_id)


@router.get(
    "/search", response_model=SearchResults, responses=errors(503), summary="Search names, synonyms and paths.",
    description=cost_note("/v1/taxonomy/search"),
)
def search_nodes(
    service: TaxonomyServiceDep, _: AnyKey,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    include_deprecated: bool = False,
) -> SearchResults:
    return service.search(q, limit, include_deprecated)


@router.get(
    "/versions", response_model=VersionList, responses=errors(503), summary="Every version, oldest first.",
    description=cost_note("/v1/taxonomy/versions"),
)
def list_versions(service: TaxonomyServiceDep, _: AnyKey) -> VersionList:
    return service.versions()


@router.get(
    "/versions/{version}", response_model=VersionDetail, responses=errors(404, 503),
    summary="One version and its edits.", description=cost_note("/v1/taxonomy/versions/1"),
)
def get_version(version: Version, service: TaxonomyServiceDep, _: AnyKey) -> VersionDetail:
    return service.version(version)


@router.get(
    "/diff", response_model=TaxonomyDiff, responses=errors(404, 503), summary="What changed between two versions.",
    description=f"{cost_note('/v1/taxonomy/diff')} {_OLD}",
)
def diff_versions(v1: FromVersion, v2: ToVersion, service: TaxonomyServiceDep, principal: AnyKey) -> TaxonomyDiff:
    return service.diff(v1, v2, principal.key_id)


@router.get(
    "/migration-map", response_model=MigrationMap, responses=errors(404, 503),
    summary="Where tags stored under one version move to in another.",
    description=f"{cost_note('/v1/taxonomy/migration-map')} {_OLD}",
)
def migration_map(v1: FromVersion, v2: ToVersion, service: TaxonomyServiceDep, principal: AnyKey) -> MigrationMap:
    return service.migration_map(v1, v2, principal.key_id)


@router.post(
    "/edits", status_code=201, response_model=EditResult,
    responses={201: {"headers": _ETAG}, **errors(412, 428, 503)},
    summary="Apply edits all-or-nothing to the version named by If-Match; published at once.",
    description="412 when If-Match is not the current version (someone else edited first: reload "
    "and re-apply). New tagging requests use the new version as soon as this returns; "
    "requests already running finish on the version they started with.",
)
def apply_edits(
    body: EditRequest, response: Response, service: TaxonomyServiceDep, principal: TaxonomyWriteScope,
    if_match: Annotated[str | None, Header(alias="If-Match", max_length=100)] = None,
) -> EditResult:
    result = service.apply(principal, if_match, body)
    response.headers["ETag"] = f'"{result.version}"'
    response.headers["Location"] = f"/v1/taxonomy/versions/{result.version}"
    return result
