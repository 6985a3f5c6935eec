"""Eval reports: the list under ``ui.reports_dir`` and each report, rendered by the UI's
own escaped template (:mod:`serve.ui.reports`), with its PNG plots."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from serve.ui.reports import image_file, list_reports, read_report, report_dir, valid_name
from serve.ui.web import SessionDep, UIError, app_state, render

router = APIRouter(prefix="/ui/reports", include_in_schema=False)


@router.get("")
async def reports(request: Request, session: SessionDep) -> Response:
    root = app_state(request).settings.reports_dir
    return render(request, "reports.html", session=session, entries=list_reports(root), root=str(root))


@router.get("/{name}")
async def report(name: str, request: Request, session: SessionDep) -> Response:
    path = report_dir(app_state(request).settings.reports_dir, name)
    if path is None:
        raise UIError(404, "Not found", "No such report.")
    try:
        blocks = read_report(path)
    except ValueError as exc:
        raise UIError(422, "Unreadable report", str(exc)) from exc
    images = {b[1][0] for b in blocks if b[0] == "img" and valid_name(b[1][0])}
    return render(request, "report.html", session=session, name=name, blocks=blocks, images=images)


@router.get("/{name}/files/{file}")
async def report_file(name: str, file: str, request: Request, session: SessionDep) -> Response:
    path = report_dir(app_state(request).settings.reports_dir, name)
    target = image_file(path, file) if path is not None else None
    if target is None:
        raise UIError(404, "Not found", "No such file.")
    return FileResponse(target, media_type="image/png")
