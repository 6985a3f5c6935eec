"""A process and its descendants, read from /proc: the one reader the benchmarks measure
RSS and CPU time with (``ray_bulk``, ``replicas_tags``)."""

from __future__ import annotations

import os
from pathlib import Path


def tree_pids(root: int) -> list[tuple[int, int, int]]:
    """(pid, RSS in pages, CPU ticks: utime + stime) of ``root`` and every descendant."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(stat[1]), []).append(int(entry))
        rss[int(entry)] = int(stat[21])
        ticks[int(entry)] = int(stat[11]) + int(stat[12])
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append((pid, rss.get(pid, 0), ticks.get(pid, 0)))
        todo.extend(children.get(pid, []))
    return found
