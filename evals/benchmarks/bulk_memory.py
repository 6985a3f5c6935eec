"""The `tag-file` driver's memory against the input's size: the peak RSS (``VmHWM``) of the
`tagsmith tag-file` process itself (not Ray's processes or workers), sampled from /proc.

The tagging is the cheap one on purpose (hashing embedder, hybrid pipeline, the default
taxonomy seeded into a data directory under ``--work-dir`` on the first run): what is measured
is what the driver holds, not MiniLM. The input is MWPD products repeated with fresh ids
(``evals.benchmarks.ray_bulk.catalog``, written to ``--work-dir`` at run time). ``--checkout``
runs another checkout's code with the same command (e.g. the commit before streaming):

    .venv/bin/python -m evals.benchmarks.bulk_memory --n 20000 --engine ray --workers 2
    .venv/bin/python -m evals.benchmarks.bulk_memory --n 20000 --engine ray --workers 2 --checkout ../old
    .venv/bin/python -m evals.benchmarks.bulk_memory --n 20000 --heap   # Python heap: lists vs streaming
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from evals.benchmarks.ray_bulk import catalog

REPO = Path(__file__).resolve().parents[2]
ENV = {"TAGSMITH_EMBEDDER__BACKEND": "hashing", "TAGSMITH_TAGGING__PIPELINE": "hybrid", "COLUMNS": "200"}


def _status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def tag_file(checkout: Path, data_dir: Path, src: Path, out: Path, extra: list[str], log: Path) -> dict[str, Any]:
    """Run `tagsmith tag-file` from ``checkout``; its wall time and peak RSS."""
    env = {**os.environ, **ENV, "PYTHONPATH": str(checkout), "TAGSMITH_DATA_DIR": str(data_dir)}
    args = [sys.executable, "-c", "from serve.cli import main; main()", "tag-file", str(src), "-o", str(out), *extra]
    started = time.monotonic()
    peak_kb = 0
    with log.open("wb") as fh:
        proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, env=env)
        while proc.poll() is None:
            peak_kb = max(peak_kb, _status_kb(proc.pid, "VmHWM") or 0)
            time.sleep(0.2)
    return {"exit": proc.returncode, "wall_s": round(time.monotonic() - started, 1), "driver_peak_rss_mb": round(peak_kb / 1024, 1)}


def heap(src: Path) -> dict[str, Any]:
    """Python heap (tracemalloc) held for the products to tag: all of them in lists
    (:func:`agent.bulk.plan_file`, what the driver held before it streamed) against the two
    streamed passes (:func:`agent.bulk.scan_file` then :func:`agent.bulk.stream_todo`)."""
    import gc
    import tracemalloc

    from agent.bulk import IdSet, plan_file, scan_file, stream_todo

    gc.collect()
    tracemalloc.start()
    plan = plan_file(src, [])
    held = tracemalloc.get_traced_memory()[0]
    del plan
    gc.collect()
    tracemalloc.stop()
    tracemalloc.start()
    done = IdSet.of([])
    scan = scan_file(src, done)
    scan_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    n = sum(1 for _ in stream_todo(src, done, scan, lambda bad: None))
    stream_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"products": n, "lists_mb": round(held / 1e6, 1), "lists_bytes_per_product": round(held / max(n, 1)),
            "scan_peak_mb": round(scan_peak / 1e6, 2), "stream_peak_mb": round(stream_peak / 1e6, 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--engine", choices=("local", "ray"), default="ray")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--checkout", type=Path, default=REPO, help="the code to run (default: this one)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/tagsmith-bulk-memory"))
    parser.add_argument("--heap", action="store_true", help="only the in-process heap: lists against streaming")
    args = parser.parse_args(argv)

    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    if args.heap:
        print(json.dumps({"n": args.n, **heap(catalog(args.n, work))}))
        return
    data_dir = work / "data"
    if not data_dir.exists():  # a first start seeds the default taxonomy and its index
        one = work / "one.jsonl"
        one.write_text(json.dumps({"id": "seed", "title": "a red cotton t-shirt"}) + "\n", encoding="utf-8")
        seeded = tag_file(REPO, data_dir, one, work / "one.out.jsonl", [], work / "seed.log")
        if seeded["exit"] != 0:
            raise SystemExit(f"seeding failed: {(work / 'seed.log').read_text()[-2000:]}")
    src = catalog(args.n, work)
    out = work / f"out-{args.engine}-{args.n}.jsonl"
    for stale in (out, out.with_name(out.name + ".errors.jsonl")):
        stale.unlink(missing_ok=True)
    extra = ["--engine", args.engine, "--batch-size", str(args.batch_size)]
    if args.engine == "ray":
        extra += ["--workers", str(args.workers)]
    log = work / f"{args.engine}-{args.n}.log"
    result = tag_file(args.checkout.resolve(), data_dir, src, out, extra, log)
    lines = out.read_bytes().count(b"\n") if out.exists() else 0
    print(json.dumps({
        "checkout": str(args.checkout), "engine": args.engine, "workers": args.workers if args.engine == "ray" else None,
        "n": args.n, "written": lines, **result,
        "products_per_s": round(lines / result["wall_s"], 1) if result["wall_s"] else None,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_avg": os.getloadavg()[0],
    }))
    if result["exit"] != 0:
        print(log.read_text()[-3000:], file=sys.stderr)


if __name__ == "__main__":
    main()
