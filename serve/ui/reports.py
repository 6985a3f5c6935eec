"""Eval reports for the UI: the directories under ``ui.reports_dir`` that hold a
``report.md`` (written by ``tagsmith eval report --out DIR``) or a run's ``metrics.json``
(``tagsmith eval run --out DIR``).

A report is read back from its Markdown into blocks (headings, paragraphs, lists, tables,
images: the only things ``evals/report.py`` writes) and rendered by the UI's own autoescaped
template, never by including its HTML: report text holds product titles, which are
untrusted. Images are served only as the PNG files directly inside the report directory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: a report or run directory name the UI serves (no separators, no dot files)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_IMG = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)$")
_HEADING = re.compile(r"^(#{1,3}) (.*)$")
MAX_REPORT_BYTES = 8 << 20
MAX_LISTED = 500

Block = tuple[str, Any]


@dataclass(frozen=True)
class ReportEntry:
    name: str
    kind: str  # "report" | "run"
    modified: datetime
    title: str


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name)) and ".." not in name


def _title(path: Path, kind: str) -> str:
    try:
        if kind == "report":
            with (path / "report.md").open(encoding="utf-8", errors="replace") as f:
                first = f.readline().strip()
            return first.lstrip("# ").strip() or path.name
        info = json.loads((path / "run.json").read_text(encoding="utf-8")) if (path / "run.json").exists() else {}
        return str(info.get("name") or path.name)
    except (OSError, ValueError):
        return path.name


def list_reports(root: Path) -> list[ReportEntry]:
    """Reports and runs directly under ``root``, newest first (none when it does not exist)."""
    if not root.is_dir():
        return []
    out: list[ReportEntry] = []
    for path in root.iterdir():
        if not path.is_dir() or not valid_name(path.name):
            continue
        kind = "report" if (path / "report.md").is_file() else "run" if (path / "metrics.json").is_file() else None
        if kind is None:
            continue
        marker = path / ("report.md" if kind == "report" else "metrics.json")
        modified = datetime.fromtimestamp(marker.stat().st_mtime, UTC)
        out.append(ReportEntry(path.name, kind, modified, _title(path, kind)))
    out.sort(key=lambda e: e.modified, reverse=True)
    return out[:MAX_LISTED]


def report_dir(root: Path, name: str) -> Path | None:
    """The directory of report ``name`` under ``root`` (None: no such report)."""
    if not valid_name(name):
        return None
    path = root / name
    if path.resolve().parent != root.resolve() or not path.is_dir():
        return None
    if (path / "report.md").is_file() or (path / "metrics.json").is_file():
        return path
    return None


def _split_row(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    cells = re.split(r"(?<!\\)\|", inner)
    return [c.strip().replace("\\|", "|") for c in cells]


def parse_markdown(text: str) -> list[Block]:
    """The blocks of a report written by ``evals/report.py`` (its ``_markdown`` in reverse).
    Anything else is kept as a paragraph of plain text."""
    blocks: list[Block] = []
    for chunk in re.split(r"\n\s*\n", text.strip()):
        lines = chunk.splitlines()
        if not lines:
            continue
        heading = _HEADING.match(lines[0])
        if heading and len(lines) == 1:
            blocks.append((f"h{len(heading.group(1))}", heading.group(2)))
        elif all(line.startswith("- ") for line in lines):
            blocks.append(("ul", [line[2:] for line in lines]))
        elif len(lines) == 1 and (img := _IMG.match(lines[0])):
            blocks.append(("img", (img.group("src"), img.group("alt"))))
        elif len(lines) >= 2 and lines[0].startswith("|") and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[1].strip()):
            blocks.append(("table", (_split_row(lines[0]), [_split_row(r) for r in lines[2:]])))
        else:
            blocks.append(("p", "\n".join(lines)))
    return blocks


def _run_blocks(path: Path) -> list[Block]:
    metrics: dict[str, Any] = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
    rows = [[k, json.dumps(v) if isinstance(v, dict | list) else str(v)] for k, v in metrics.items()]
    return [("h1", f"eval run {_title(path, 'run')}"),
            ("p", "The run's metrics.json (make a report with `tagsmith eval report`)."),
            ("table", (["metric", "value"], rows))]


def read_report(path: Path) -> list[Block]:
    """The blocks of the report (or run) in ``path``; raises ValueError when unreadable."""
    try:
        md = path / "report.md"
        if md.is_file():
            if md.stat().st_size > MAX_REPORT_BYTES:
                raise ValueError(f"the report is larger than {MAX_REPORT_BYTES} bytes")
            return parse_markdown(md.read_text(encoding="utf-8", errors="replace"))
        return _run_blocks(path)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read the report: {exc}") from exc


def image_file(path: Path, file: str) -> Path | None:
    """A PNG file directly inside the report directory (None for anything else)."""
    if not valid_name(file) or not file.lower().endswith(".png"):
        return None
    target = path / file
    return target if target.is_file() and target.resolve().parent == path.resolve() else None
