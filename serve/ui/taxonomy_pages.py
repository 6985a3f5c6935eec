"""Taxonomy browser and editor: the tree (children loaded a level at a time), search with
autocomplete, node details, and add / rename / move / deprecate through the API's own
:class:`~serve.api.taxonomy.service.TaxonomyService` with the If-Match flow. When the version
the editor saw is no longer current, the page says so and shows what changed in between
(the taxonomy diff) and offers to re-apply the edit on the current version."""

from __future__ import annotations

import weakref
from collections import Counter
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from retrieval import ExampleIndex
from serve.api.errors import ApiError
from serve.api.taxonomy.protocol import EditRequest, NodeOut
from serve.api.taxonomy.service import TaxonomyService
from serve.ui.counterparts import counterparts_of
from serve.ui.web import (
    SessionDep,
    UIError,
    api_call_failed,
    checked_form,
    redirect,
    render,
    require_scope,
    services,
)
from taxonomy import Snapshot, TaxonomyDiff

router = APIRouter(prefix="/ui/taxonomy", include_in_schema=False)
MAX_ID = 512
MAX_NAME = 500
SEARCH_LIMIT = 50
#: per index object: examples tagged with each node id (counted once per index generation)
_TAG_COUNTS: weakref.WeakKeyDictionary[ExampleIndex, Counter[str]] = weakref.WeakKeyDictionary()
EDIT_OPS = ("rename", "move", "deprecate", "add")


def _service(request: Request) -> TaxonomyService:
    return services(request).taxonomy


def _text(form: dict[str, str], name: str, limit: int = MAX_NAME) -> str:
    value = form.get(name, "").strip()
    if len(value) > limit:
        raise UIError(422, "Too long", f"{name} is longer than {limit} characters")
    return value


def example_count(index: ExampleIndex, snap: Snapshot, node_id: str) -> int:
    """Examples in the index tagged with this node or one under it."""
    counts = _TAG_COUNTS.get(index)
    if counts is None:
        counts = Counter(tag for example in index for tag in set(example.tags))
        _TAG_COUNTS[index] = counts
    return counts[node_id] + sum(counts[d] for d in snap.descendants(node_id))


@router.get("")
async def tree(request: Request, session: SessionDep) -> Response:
    service = _service(request)
    q = request.query_params.get("q", "").strip()[:200]
    info = service.info()
    root_nodes = [service.node(r, None) for r in info.roots]
    hits = service.search(q, SEARCH_LIMIT, include_deprecated=True).hits if q else []
    return render(request, "taxonomy.html", session=session, info=info, roots=root_nodes, q=q, hits=hits)


@router.get("/children.json")
async def children(request: Request, session: SessionDep) -> Response:
    """One level of the tree, for the page's script: ``parent`` empty gives the roots."""
    service = _service(request)
    parent = request.query_params.get("parent", "")[:MAX_ID] or None
    try:
        if parent is None:
            info = service.info()
            items: list[NodeOut] = [service.node(r, None) for r in info.roots]
        else:
            items = list(service.nodes(parent=parent, include_deprecated=True, version=None, offset=0, limit=1000).items)
    except ApiError as exc:
        return JSONResponse({"error": exc.message}, status_code=exc.status)
    return JSONResponse({"items": [
        {"id": n.id, "name": n.name, "is_leaf": n.is_leaf, "deprecated": n.deprecated} for n in items
    ]})


@router.get("/search.json")
async def search_json(request: Request, session: SessionDep) -> Response:
    """Autocomplete: nodes whose name, synonyms or path match ``q``."""
    q = request.query_params.get("q", "").strip()[:200]
    leaves = request.query_params.get("leaves") == "1"
    if not q:
        return JSONResponse({"hits": []})
    service = _service(request)
    hits = service.search(q, 40 if leaves else 15, include_deprecated=False).hits
    snap = service.store.current()
    out = [{"id": h.id, "name": h.name, "path": h.path} for h in hits if not leaves or snap.is_leaf(h.id)]
    return JSONResponse({"hits": out[:15]})


def _node_context(request: Request, node_id: str) -> dict[str, Any]:
    service = _service(request)
    try:
        node = service.node(node_id, None)
        kids = service.nodes(parent=node_id, include_deprecated=True, version=None, offset=0, limit=1000)
        attrs = service.attributes(category=node_id, include_deprecated=False, version=None, offset=0, limit=1000)
    except ApiError as exc:
        api_call_failed(exc)
    snap = service.store.current()
    tagging = services(request).tagging
    count = example_count(tagging.current.index, snap, node_id) if node_id in snap else 0
    ancestors = list(zip(node.ancestors, node.path[:-1], strict=False))
    return {"node": node, "children": kids.items, "ancestors": ancestors, "attributes": attrs.items,
            "examples": count, "version": kids.version, "counterparts": counterparts_of(request, node_id)}


@router.get("/node")
async def node_page(request: Request, session: SessionDep) -> Response:
    node_id = request.query_params.get("id", "")
    if not node_id or len(node_id) > MAX_ID:
        raise UIError(404, "Not found", "No such node.")
    context = _node_context(request, node_id)
    return render(request, "node.html", session=session, can_edit=session.principal.allows("taxonomy:write"),
                  **context)


def _edit(op: str, node_id: str, form: dict[str, str]) -> tuple[dict[str, Any], str]:
    """The store edit a form asks for, and how to describe it to the editor."""
    if op == "rename":
        name = _text(form, "name")
        return {"op": "rename", "id": node_id, "name": name}, f"rename {node_id} to {name!r}"
    if op == "move":
        parent = _text(form, "parent", MAX_ID) or None
        return {"op": "move", "id": node_id, "parent": parent}, f"move {node_id} under {parent or 'the root'}"
    if op == "deprecate":
        successor = _text(form, "replaced_by", MAX_ID) or None
        return ({"op": "deprecate", "id": node_id, "replaced_by": successor},
                f"deprecate {node_id}" + (f" (replaced by {successor})" if successor else ""))
    if op == "add":
        new_id, name = _text(form, "new_id", MAX_ID), _text(form, "name")
        return ({"op": "add_node", "id": new_id, "name": name, "parent": node_id},
                f"add {new_id} ({name!r}) under {node_id}")
    raise UIError(422, "Unknown edit", f"the edit must be one of {', '.join(EDIT_OPS)}")


@router.post("/edit")
async def edit(request: Request, session: SessionDep) -> Response:
    form = await checked_form(request, session)
    require_scope(session, "taxonomy:write")
    node_id = _text(form, "id", MAX_ID)
    op = form.get("op", "")
    version_text = form.get("version", "")
    if not version_text.isdigit() or not 1 <= int(version_text) < 2**31:
        raise UIError(422, "Rejected", "the form names no taxonomy version: reload the page")
    version = int(version_text)
    change, description = _edit(op, node_id, form)
    message = _text(form, "message", 2000) or None
    try:
        body = EditRequest.model_validate({"edits": [change], "message": message})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UIError(422, "Rejected", f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from exc
    service = _service(request)
    try:
        result = service.apply(session.principal, f'"{version}"', body)
    except ApiError as exc:
        if exc.status == 412:
            return _conflict(request, session, service, version, exc, op, node_id, form, description)
        if exc.status == 422:
            context = _node_context(request, node_id) if node_id in service.store.current() else None
            if context is None:
                api_call_failed(exc)
            return render(request, "node.html", status=422, session=session, can_edit=True,
                          error=f"The edit was rejected: {exc.message}", **context)
        api_call_failed(exc)
    target = change["id"] if op == "add" else node_id
    return redirect(f"/ui/taxonomy/node?id={_q(target)}",
                    f"Published version {result.version}: {description}.")


def _q(value: str) -> str:
    return quote(value, safe="")


def diff_rows(diff: TaxonomyDiff, snap: Snapshot) -> list[tuple[str, str]]:
    """The diff as (kind, what) lines, with names from ``snap`` where it has them."""

    def name(node_id: str | None) -> str:
        if node_id is None:
            return "(root)"
        node = snap.get(node_id)
        return f"{node.name} ({node_id})" if node is not None else node_id

    rows: list[tuple[str, str]] = []
    rows += [("added", name(i)) for i in diff.added]
    rows += [("removed", i) for i in diff.removed]
    rows += [("renamed", f"{r.id}: {r.old_name} → {r.new_name}") for r in diff.renamed]
    rows += [("moved", f"{name(m.id)}: {name(m.old_parent)} → {name(m.new_parent)}") for m in diff.moved]
    rows += [("deprecated", name(d.id) + (f" → {name(d.replaced_by)}" if d.replaced_by else "")) for d in diff.deprecated]
    rows += [("undeprecated", name(i)) for i in diff.undeprecated]
    rows += [("synonyms changed", name(i)) for i in diff.synonyms_changed]
    rows += [("description changed", name(i)) for i in diff.descriptions_changed]
    rows += [("attributes of", name(c.category)) for c in diff.attachments_changed]
    rows += [("attribute added", i) for i in diff.attributes_added]
    rows += [("attribute removed", i) for i in diff.attributes_removed]
    rows += [("attribute changed", i) for i in diff.attributes_changed]
    rows += [("attribute renamed", f"{r.old_name} → {r.new_name}") for r in diff.attributes_renamed]
    rows += [("attribute values changed", c.attribute) for c in diff.attribute_values_changed]
    return rows


def _conflict(
    request: Request, session: Any, service: TaxonomyService, version: int, exc: ApiError, op: str,
    node_id: str, form: dict[str, str], description: str,
) -> Response:
    current_text = exc.headers.get("ETag", "").strip('"')
    current = int(current_text) if current_text.isdigit() else service.info().version
    rows: list[tuple[str, str]] = []
    diff_problem: str | None = None
    try:
        diff = service.diff(version, current, session.principal.key_id)
    except ApiError as diff_error:
        diff_problem = diff_error.message
    else:
        rows = diff_rows(diff, service.store.current())
    versions = [v for v in service.versions().items if version < v.version <= current]
    kept = {k: form.get(k, "") for k in ("name", "parent", "replaced_by", "new_id", "message")}
    return render(request, "conflict.html", status=412, session=session, edited=version, current=current,
                  rows=rows, diff_problem=diff_problem, versions=versions, op=op, node_id=node_id,
                  fields=kept, description=description)


@router.get("/versions")
async def versions(request: Request, session: SessionDep) -> Response:
    items = list(reversed(_service(request).versions().items))[:200]
    return render(request, "versions.html", session=session, versions=items)


@router.get("/diff")
async def diff_page(request: Request, session: SessionDep) -> Response:
    params = request.query_params
    v1, v2 = params.get("from", ""), params.get("to", "")
    if not (v1.isdigit() and v2.isdigit()) or not (1 <= int(v1) < 2**31 and 1 <= int(v2) < 2**31):
        raise UIError(404, "Not found", "Name two versions: ?from=1&to=2")
    service = _service(request)
    try:
        diff = service.diff(int(v1), int(v2), session.principal.key_id)
    except ApiError as exc:
        api_call_failed(exc)
    return render(request, "diff.html", session=session, v1=int(v1), v2=int(v2),
                  rows=diff_rows(diff, service.store.current()))
