"""`tagsmith tag-file --engine ray`: a local Ray instance with 2 CPUs tags 5,000 MWPD products
(read from ../shared at test time) and writes what the single-process path writes, id by id
and in the same order; a worker SIGKILLed mid-run is restarted and its batch redone (no id
lost or doubled); a driver SIGKILLed mid-run and re-run writes each remaining id once.

The hashing embedder and the tiny shop index keep it fast (these tests are about the
engine, not MiniLM; the real-model run is evals/benchmarks/ray_bulk.py). Process tier:
each Ray start costs ~10 s of CPU. Needs the ray extra (scripts/install-ray.sh; CI installs
it): skipped without it, except under CI, where that is a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent.bulk import plan_file
from agent.contract import Product
from serve.runtime import build_runtime
from tests.conftest import shared_file
from tests.serve.helpers import HASHING_ENV, seed_data_dir, service_settings

pytestmark = pytest.mark.process  # starts Ray clusters, SIGKILLs workers and drivers

if os.environ.get("CI") != "true":
    pytest.importorskip("ray", reason="the ray extra is not installed (scripts/install-ray.sh)")

TAGSMITH = str(Path(sys.executable).parent / "tagsmith")
N = 5000
N_DRIVER = 1500  # the driver-kill test tags a prefix: it starts Ray twice
BATCH = 100
ENV = {
    **HASHING_ENV, "TAGSMITH_TAGGING__PIPELINE": "hybrid",
    # Ray Data starts its actor pool without waiting for the actors (the first one ready may
    # take every batch); here the run starts once both are: both worker processes exist
    # when the kill test looks for them
    "RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S": "600",
}


def _mwpd(n: int) -> list[dict[str, Any]]:
    rows = []
    with shared_file("mwpd/pool.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            if (r["title"] or "").strip():
                rows.append({"id": r["id"], "title": r["title"][:1000], "description": r["description"][:2000]})
            if len(rows) == n:
                break
    return rows


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The data directory (shop taxonomy + examples), the input file with two bad lines, and
    the single-process results (computed here, in-process: what `tag-file` writes)."""
    root = tmp_path_factory.mktemp("ray")
    data_dir = root / "data"
    seed_data_dir(data_dir, tagging={"pipeline": "hybrid"})
    rows = _mwpd(N)
    lines = [json.dumps(r) for r in rows]
    lines.insert(10, '{"title": "no id"}')
    lines.insert(20, json.dumps({"id": rows[0]["id"], "title": "duplicate"}))
    src = root / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    runtime = build_runtime(service_settings(data_dir, tagging={"pipeline": "hybrid"}))
    try:
        products = [Product.model_validate(r) for r in rows]
        reference = {r.id: _comparable(r.model_dump_json())
                     for start in range(0, N, BATCH) for r in runtime.tagger.tag_many(products[start : start + BATCH])}
    finally:
        runtime.close()
    return {"root": root, "data_dir": data_dir, "src": src, "ids": [r["id"] for r in rows], "reference": reference}


def _comparable(line: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(line)
    record.pop("timings_ms")  # wall-clock times differ from run to run
    return record


def _cmd(src: Path, out: Path) -> list[str]:
    return [TAGSMITH, "tag-file", str(src), "-o", str(out), "--engine", "ray", "--workers", "2",
            "--batch-size", str(BATCH)]


def _start(args: list[str], data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    # its own session: after a SIGKILL of the driver, its Ray processes are ours to clean up
    with log.open("wb") as fh:
        return subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **ENV, "TAGSMITH_DATA_DIR": str(data_dir), "COLUMNS": "200"})


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _wait_lines(proc: subprocess.Popen[bytes], out: Path, at_least: int, log: Path) -> None:
    deadline = time.monotonic() + 240
    while _lines(out) < at_least:
        assert proc.poll() is None, f"exited early ({proc.returncode}):\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no progress:\n{log.read_text()[-3000:]}"
        time.sleep(0.05)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found[1:]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group of the process this test started
    proc.wait(timeout=30)


def worker_counts(log: str) -> dict[int, int]:
    """Products tagged per worker process, from the driver's "ray: N worker process(es):
    pid P: COUNT (…), …" line (asserted to be there, N matching)."""
    match = re.search(r"(\d+) worker process\(es\): (.*)", log)
    assert match, log[-3000:]
    counts = {int(pid): int(n.replace(",", "")) for pid, n in re.findall(r"pid (\d+)(?:@\S+)?: ([\d,]+) \(", match[2])}
    assert len(counts) == int(match[1]), match[0]
    return counts


def _tagworkers(root: int) -> list[int]:
    return [pid for pid in _descendants(root) if "_TagWorker" in _cmdline(pid)]


def _check_complete(out: Path, catalog: dict[str, Any], n: int = N) -> None:
    records = [_comparable(line) for line in out.read_text(encoding="utf-8").splitlines()]
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), "an id was written twice"
    assert ids == catalog["ids"][:n]  # every id, once, in input order
    mismatched = [r["id"] for r in records if r != catalog["reference"][r["id"]]]
    assert not mismatched, f"{len(mismatched)} results differ from the single-process path, e.g. {mismatched[:3]}"


def test_worker_killed_mid_run_is_restarted_and_output_equals_single_process(catalog: dict[str, Any]) -> None:
    out, log = catalog["root"] / "worker-kill.jsonl", catalog["root"] / "worker-kill.log"
    proc = _start(_cmd(catalog["src"], out), catalog["data_dir"], log)
    try:
        _wait_lines(proc, out, 5 * BATCH, log)
        workers = _tagworkers(proc.pid)
        assert len(workers) == 2, [_cmdline(p) for p in _descendants(proc.pid)]
        victim, survivor = workers
        # the survivor is paused until the victim's restart shows up: otherwise it may tag
        # every remaining batch (the killed one's retried) before the restart is scheduled
        os.kill(survivor, signal.SIGSTOP)
        try:
            os.kill(victim, signal.SIGKILL)
            assert _lines(out) < N - 5 * BATCH, "killed too late to mean anything"
            deadline = time.monotonic() + 180
            while not (restarted := set(_tagworkers(proc.pid)) - set(workers)):
                assert proc.poll() is None, f"exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"the killed worker was not restarted:\n{log.read_text()[-3000:]}"
                time.sleep(0.1)
        finally:
            os.kill(survivor, signal.SIGCONT)
        assert proc.wait(timeout=300) == 1, log.read_text()[-3000:]  # 1: the two bad lines
    finally:
        _kill_group(proc)
    text = log.read_text()
    assert f"{N} tagged, 0 already in" in text and "2 bad line(s)" in text, text[-3000:]
    # each product counted once, whichever process tagged it (the victim, its restart, the survivor)
    counts = worker_counts(text)
    assert sum(counts.values()) == N, counts
    print(f"killed {victim}, restarted as {sorted(restarted)}; products per worker process: {counts}")
    _check_complete(out, catalog)


def test_driver_killed_mid_run_resumes_exactly_once_from_parquet(catalog: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # the first products (and the two bad lines) as Parquet: read as their JSONL is, row
    # numbers standing for line numbers
    lines = catalog["src"].read_text(encoding="utf-8").splitlines()[: N_DRIVER + 2]
    prefix = catalog["root"] / "prefix.jsonl"
    prefix.write_text("\n".join(lines) + "\n", encoding="utf-8")
    src = catalog["root"] / "in.parquet"
    pq.write_table(pa.Table.from_pylist([json.loads(line) for line in lines]), src)
    jsonl_plan, parquet_plan = plan_file(prefix, set()), plan_file(src, set())
    assert len(parquet_plan.todo) == N_DRIVER
    assert parquet_plan.todo == jsonl_plan.todo and parquet_plan.bad == jsonl_plan.bad
    assert [b["line"] for b in parquet_plan.bad] == [11, 21]

    out, log = catalog["root"] / "driver-kill.jsonl", catalog["root"] / "driver-kill.log"
    proc = _start(_cmd(src, out), catalog["data_dir"], log)
    try:
        _wait_lines(proc, out, 3 * BATCH, log)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        _kill_group(proc)
    written = _lines(out)
    assert 3 * BATCH <= written < N_DRIVER, "the run must have been interrupted midway"
    with out.open("ab") as fh:
        fh.write(b'{"id": "torn-li')  # as a crash inside a write would leave it

    log2 = catalog["root"] / "driver-rerun.log"
    rerun = _start(_cmd(src, out), catalog["data_dir"], log2)
    try:
        assert rerun.wait(timeout=300) == 1, log2.read_text()[-3000:]
    finally:
        _kill_group(rerun)
    assert f"{N_DRIVER - written} tagged, {written} already in" in log2.read_text(), log2.read_text()[-3000:]
    _check_complete(out, catalog, N_DRIVER)
