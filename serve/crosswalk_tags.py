"""A tagging result's top tag in a second taxonomy (``?crosswalk=google``, ``--crosswalk``):
the one place where a crosswalk's counterpart becomes the contract's ``crosswalk`` field, for
the API, jobs, ``tagsmith tag`` and ``tag-file`` alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from agent.contract import CrosswalkTag, CrosswalkTags, TagResult
from taxonomy.crosswalk_catalog import CrosswalkCatalog, Resolved

R = TypeVar("R", bound=TagResult)


def crosswalk_tags(resolved: Resolved, result: TagResult, *, fallback: bool = True) -> CrosswalkTags:
    crosswalk, target = resolved.crosswalk, resolved.target
    common = {
        "crosswalk": crosswalk.name, "crosswalk_version": crosswalk.version,
        "taxonomy": crosswalk.document.target_taxonomy, "version": target.version,
    }
    if not result.tags:
        return CrosswalkTags(**common, status="unmapped", source_id=None, tags=[], reason="the product has no tag")
    found = crosswalk.counterpart(result.tags[0].id, resolved.source, target, fallback=fallback)
    return CrosswalkTags(
        **common, status=found.status, source_id=found.source_id, reason=found.reason,
        tags=[
            CrosswalkTag(id=t, name=target.node(t).name, path=list(target.path_names(t)))
            for t in found.target_ids
        ],
    )


def add_crosswalk(
    catalog: CrosswalkCatalog, name: str, results: Sequence[R], *, fallback: bool = True
) -> list[R]:
    """``results`` with their ``crosswalk`` field filled from crosswalk ``name``, each read
    against the taxonomy version it was tagged with. Raises UnknownCrosswalk /
    MissingTaxonomy (callers check the name first with :func:`check_crosswalk`)."""
    resolved: dict[int, Resolved] = {}
    out = []
    for result in results:
        version = result.taxonomy_version
        if version not in resolved:
            resolved[version] = catalog.resolve(name, source_version=version)
        out.append(result.model_copy(update={"crosswalk": crosswalk_tags(resolved[version], result, fallback=fallback)}))
    return out


def check_crosswalk(catalog: CrosswalkCatalog, name: str) -> None:
    """Raises UnknownCrosswalk or MissingTaxonomy when ``name`` cannot be used now."""
    catalog.resolve(name)
