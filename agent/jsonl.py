"""Append-only JSONL result files that survive crashes (``tag-file``, the eval runner).

Lines are appended in batches and fsynced, so a crash loses at most the batch being
written and can leave at most one torn last line; :func:`resume` cuts that line off and
returns the ids already done, so a re-run continues where the previous one stopped and
every id appears exactly once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path


def resume(path: Path, key: str = "id") -> list[str]:
    """Values of ``key`` on the complete lines of ``path`` (in order); a partial last line
    is truncated away (durably). A missing file is an empty list."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with path.open("r+b") as fh:
            fh.truncate(end)
            fh.flush()
            os.fsync(fh.fileno())
    done = []
    for line in data[:end].splitlines():
        if line.strip():
            done.append(str(json.loads(line)[key]))
    return done


def append_durable(path: Path, lines: Sequence[str]) -> None:
    """Append complete lines (each ending in a newline) and fsync before returning."""
    if not lines:
        return
    with path.open("a", encoding="utf-8") as fh:
        fh.write("".join(lines))
        fh.flush()
        os.fsync(fh.fileno())
