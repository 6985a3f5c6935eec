"""`tagsmith tag-file`: a real run, a SIGKILL mid-run then resume, bad lines reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.contract import TagResult
from tests.conftest import shared_file

pytestmark = pytest.mark.process  # SIGKILLs the CLI mid-file

TAGSMITH = str(Path(sys.executable).parent / "tagsmith")
N = 24


def _write_input(path: Path) -> list[str]:
    ids = []
    lines = []
    with shared_file("mwpd/dev.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            if not (r["title"] or "").strip():
                continue
            lines.append(json.dumps({"id": r["id"], "title": r["title"], "description": r["description"][:2000]}))
            ids.append(r["id"])
            if len(ids) == N:
                break
    bad = ['{"title": "no id"}', "not json at all", json.dumps({"id": ids[0], "title": "duplicate"}),
           json.dumps({"id": "empty-title", "title": ""})]
    # bad lines sit between good ones: they must not stop or shift anything
    text = "\n".join(lines[:5] + bad + lines[5:]) + "\n"
    path.write_bytes(text.encode("utf-8") + b'{"id": "latin-1", "title": "caf\xe9"}\n')
    return ids


def _run(args: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TAGSMITH, "tag-file", *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "TAGSMITH_DATA_DIR": str(data_dir), "COLUMNS": "60"})


def _tags(path: Path) -> dict[str, list[str]]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        result = TagResult.model_validate_json(line)
        assert result.id is not None
        out[result.id] = [t.id for t in result.tags]
    return out


def test_tag_file_resumes_after_sigkill_and_reports_bad_lines(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    src = tmp_path / "in.jsonl"
    ids = _write_input(src)

    clean = tmp_path / "clean.jsonl"
    first = _run([str(src), "-o", str(clean), "--batch-size", "8"], data_dir)
    assert first.returncode == 1, first.stderr[-2000:]  # 1: there were bad lines
    assert f"{N} tagged" in first.stdout and "5 bad line(s)" in first.stdout
    reference = _tags(clean)
    assert list(reference) == ids and all(reference.values())
    errors = [json.loads(x) for x in (tmp_path / "clean.jsonl.errors.jsonl").read_text().splitlines()]
    assert [e["line"] for e in errors] == [6, 7, 8, 9, N + 5]
    assert "id" in errors[0]["error"] and "invalid JSON" in errors[1]["error"]
    assert "duplicate id" in errors[2]["error"] and "title" in errors[3]["error"]
    assert errors[4]["error"] == "not UTF-8"

    # interrupted: SIGKILL once some batches are durable, then a torn line as a crash leaves
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen([TAGSMITH, "tag-file", str(src), "-o", str(out), "--batch-size", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "TAGSMITH_DATA_DIR": str(data_dir)})
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_text(encoding="utf-8").count("\n") >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    written = out.read_text(encoding="utf-8").count("\n")
    assert 4 <= written < N, "the run must have been interrupted midway"
    with out.open("a", encoding="utf-8") as fh:
        fh.write('{"id": "torn-li')

    second = _run([str(src), "-o", str(out)], data_dir)
    assert second.returncode == 1, second.stderr[-2000:]
    assert f"{N - written} tagged, {written} already in" in second.stdout
    resumed = _tags(out)
    assert list(resumed) == ids  # each id exactly once, in input order
    assert resumed == reference

    third = _run([str(src), "-o", str(out)], data_dir)
    # the duplicate of a done id is still a bad line: the report describes the input, not the run
    assert f"0 tagged, {N} already in" in third.stdout and "5 bad line(s)" in third.stdout
