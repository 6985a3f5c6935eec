"""retrieval.durable: atomic replacement and append-only JSONL, including real SIGKILLs.

The end-to-end crash tests of their users stay with them (IndexStore: test_crash.py, jobs:
tests/serve/test_jobs_crash.py, tag-file: tests/agent/test_tag_file_cli.py, eval runner:
tests/evals/test_runner.py); these test the primitives themselves.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import retrieval.durable
from retrieval.durable import (
    append_lines,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    complete_lines,
    cut_torn_tail,
    fsync_dir,
    iter_complete_lines,
    iter_resume_keys,
    resume_keys,
    write_bytes_durable,
)

DURABLE = Path(retrieval.durable.__file__)


def temps(directory: Path) -> list[Path]:
    return sorted(directory.glob(".*.tmp"))


# ---- atomic replacement -----------------------------------------------------------------
def test_atomic_write_replaces_whole_content_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "dir" / "CURRENT"  # parents are created
    atomic_write_text(target, "gen-000001 abc\n")
    assert target.read_text(encoding="utf-8") == "gen-000001 abc\n"
    atomic_write_bytes(target, b"gen-000002 def\n")
    assert target.read_bytes() == b"gen-000002 def\n"
    atomic_write_text(target, "caf\u00e9\n")
    assert target.read_bytes() == "caf\u00e9\n".encode()
    assert temps(target.parent) == []


def test_atomic_write_json_is_stable_and_honours_ensure_ascii(tmp_path: Path) -> None:
    data = {"b": [1, 2], "a": "caf\u00e9"}
    atomic_write_json(tmp_path / "a.json", data)
    assert (tmp_path / "a.json").read_text(encoding="utf-8") == json.dumps(data, indent=1, sort_keys=True) + "\n"
    assert b"\\u00e9" in (tmp_path / "a.json").read_bytes()
    atomic_write_json(tmp_path / "u.json", data, ensure_ascii=False)
    assert "caf\u00e9" in (tmp_path / "u.json").read_text(encoding="utf-8")
    assert json.loads((tmp_path / "u.json").read_text(encoding="utf-8")) == data


def test_a_failed_write_keeps_the_previous_content_and_removes_its_temp(tmp_path: Path) -> None:
    target = tmp_path / "run.json"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new", encoding="utf-8")
        raise RuntimeError("killed midway")
    assert target.read_text(encoding="utf-8") == "old\n"
    assert temps(tmp_path) == []
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text(encoding="utf-8") == "old\n" and temps(tmp_path) == []


def test_atomic_path_lets_a_library_write_by_path_and_stream(tmp_path: Path) -> None:
    target = tmp_path / "dataset.jsonl"
    with atomic_path(target) as tmp, tmp.open("w", encoding="utf-8") as fh:
        assert tmp.parent == target.parent and tmp.name.startswith(".dataset.jsonl.")
        assert not target.exists()  # nothing visible until the block ends
        for i in range(3):
            fh.write(json.dumps({"i": i}) + "\n")
    assert [json.loads(x)["i"] for x in target.read_text(encoding="utf-8").splitlines()] == [0, 1, 2]
    assert temps(tmp_path) == []


def test_write_bytes_durable_and_fsync_dir(tmp_path: Path) -> None:
    write_bytes_durable(tmp_path / "f.bin", b"\x00\x01")
    fsync_dir(tmp_path)
    assert (tmp_path / "f.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(FileNotFoundError):
        fsync_dir(tmp_path / "missing")


def _payload(writer: int, n: int) -> bytes:
    body = f"{writer}:{n}:".encode() * (500 + 97 * writer)  # each writer its own size
    return hashlib.sha256(body).hexdigest().encode() + b"\n" + body


def _whole(data: bytes) -> bool:
    digest, _, body = data.partition(b"\n")
    return hashlib.sha256(body).hexdigest().encode() == digest


def test_concurrent_atomic_writers_never_share_a_temp_nor_expose_a_mix(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    atomic_write_bytes(target, _payload(99, 0))
    errors: list[BaseException] = []
    stop = threading.Event()
    seen = 0

    def write(writer: int) -> None:
        try:
            for n in range(40):
                atomic_write_bytes(target, _payload(writer, n))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def read() -> None:
        nonlocal seen
        while not stop.is_set():
            data = target.read_bytes()  # always some writer's whole content
            if not _whole(data):
                errors.append(AssertionError(f"torn content of {len(data)} bytes"))
                return
            seen += 1

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(w,)) for w in range(6)]
    for t in writers:
        t.start()
    for t in writers:
        t.join(60)
    stop.set()
    reader.join(60)
    assert not errors, errors
    assert seen > 0
    final = target.read_bytes()
    assert _whole(final) and final.partition(b"\n")[2].split(b":", 1)[0] in {b"0", b"1", b"2", b"3", b"4", b"5"}
    assert temps(tmp_path) == []


# ---- append-only JSONL ------------------------------------------------------------------
def test_append_lines_appends_complete_utf8_lines(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    append_lines(path, [])
    assert not path.exists()  # nothing to write: no file either
    append_lines(path, [json.dumps({"id": "a"}) + "\n", json.dumps({"id": "\u00e9"}, ensure_ascii=False) + "\n"])
    append_lines(path, (json.dumps({"id": i}) + "\n" for i in range(2)))  # any iterable
    assert path.read_bytes() == '{"id": "a"}\n{"id": "\u00e9"}\n{"id": 0}\n{"id": 1}\n'.encode()
    with pytest.raises(ValueError, match="newline"):
        append_lines(path, ['{"id": "b"}\n', '{"id": "c"}'])
    assert resume_keys(path) == ["a", "\u00e9", "0", "1"]  # the refused batch wrote nothing


def test_torn_last_line_is_cut_off_durably(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"custom_id": "c1"}\n\n{"custom_id": "c2"}\n{"custom_id": "c3", "res')
    assert complete_lines(path) == [b'{"custom_id": "c1"}', b'{"custom_id": "c2"}']  # blank skipped
    assert path.read_bytes() == b'{"custom_id": "c1"}\n\n{"custom_id": "c2"}\n'  # the file itself
    assert complete_lines(path) == [b'{"custom_id": "c1"}', b'{"custom_id": "c2"}']  # idempotent
    path.write_bytes(b'{"id": 1}\n   ')  # whitespace after the last newline is a torn line too
    assert resume_keys(path) == ["1"] and path.read_bytes() == b'{"id": 1}\n'
    path.write_bytes(b'{"id": "only-partial')
    assert resume_keys(path) == [] and path.read_bytes() == b""


def test_a_torn_line_longer_than_the_tail_block_is_cut_reading_only_the_tail(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    torn = b'{"id": "t", "pad": "' + b"x" * 200_000  # longer than the 64 KiB read back at a time
    path.write_bytes(b'{"id": "a"}\n' + torn)
    lines = iter_complete_lines(path)
    assert path.read_bytes().endswith(b"x")  # a generator: nothing done before the first line
    assert next(lines) == b'{"id": "a"}' and path.read_bytes() == b'{"id": "a"}\n'
    path.write_bytes(torn)  # no newline at all: the whole file is torn
    cut_torn_tail(path)
    assert path.read_bytes() == b""
    assert list(iter_resume_keys(path)) == [] and not list(iter_complete_lines(tmp_path / "missing"))


def test_resume_keys(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    assert resume_keys(missing) == [] and complete_lines(missing) == []
    assert not missing.exists()  # reading never creates the file
    path = tmp_path / "predictions.jsonl"
    path.write_text('{"id": "b", "x": 1}\n{"id": 7}\n{"id": "a"}\n{"id": "z', encoding="utf-8")
    assert resume_keys(path) == ["b", "7", "a"]  # file order, str() of any JSON value
    append_lines(path, ['{"id": "z"}\n'])  # the resumed run continues after the cut
    assert resume_keys(path) == ["b", "7", "a", "z"]
    jobs = tmp_path / "results.jsonl"
    jobs.write_text('{"custom_id": "c1"}\n', encoding="utf-8")
    assert resume_keys(jobs, key="custom_id") == ["c1"]
    with pytest.raises(KeyError):
        resume_keys(jobs)
    jobs.write_text('{"custom_id": "c1"}\nnot json\n', encoding="utf-8")
    with pytest.raises(ValueError):
        resume_keys(jobs, key="custom_id")


# ---- real SIGKILLs ----------------------------------------------------------------------
# durable.py is standard library only: the children load it by path, which keeps each start
# well under a second (importing the retrieval package would load faiss, numpy, sklearn)
LOAD = textwrap.dedent(
    """
    import importlib.util, json, sys
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("durable", sys.argv[1])
    durable = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(durable)
    """
)

APPENDER = LOAD + textwrap.dedent(
    """
    path, total, batch = Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    done = durable.resume_keys(path, key="k")
    assert done == [str(i) for i in range(len(done))], "not a contiguous prefix of keys"
    print(len(done), flush=True)
    i, pad = len(done), "x" * 1000
    while total == 0 or i < total:  # 0: until killed
        n = batch if total == 0 else min(batch, total - i)
        durable.append_lines(path, [json.dumps({"k": j, "pad": pad}) + "\\n" for j in range(i, i + n)])
        i += n
        print(i, flush=True)  # acknowledged: lines 0..i-1 are on disk
    """
)


def _appender(path: Path, total: int, batch: int = 200) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", APPENDER, str(DURABLE), str(path), str(total), str(batch)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


@pytest.mark.process
def test_sigkill_mid_append_then_resume_writes_every_key_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    rng = random.Random(17)
    counts, torn, acknowledged = [], 0, 0
    for attempt in range(8):
        proc = _appender(path, 0)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line, proc.stderr.read().decode() if proc.stderr else ""
            counts.append(int(line))
            assert counts[-1] >= acknowledged, "an acknowledged append was lost"
            if attempt % 2:  # every other run is killed after an append it acknowledged (then at random)
                line = proc.stdout.readline()
                assert line, proc.stderr.read().decode() if proc.stderr else ""
                acknowledged = int(line)
            time.sleep(rng.uniform(0.0, 0.06))  # before, during or between appends and fsyncs
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        data = path.read_bytes() if path.exists() else b""
        torn += not data.endswith(b"\n") and data != b""
        if attempt == 3:  # make sure at least one resume meets a torn line
            with path.open("ab") as fh:
                fh.write(b'{"k": 999999, "pad": "xx')
    # the last killed run went on appending after it printed where it resumed: count what
    # it left (complete lines only) so that the final run has 500 more to write
    total = path.read_bytes().count(b"\n") + 500
    final = _appender(path, total)
    out, err = final.communicate(timeout=60)
    assert final.returncode == 0, err.decode()
    counts.append(int(out.split()[0]))
    # each run resumed where the last stopped, after every append acknowledged before its kill
    assert counts == sorted(counts) and counts[-1] >= acknowledged > 0
    data = path.read_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == total
    assert [json.loads(x)["k"] for x in data.splitlines()] == list(range(total))
    print(f"resumed at {counts}, {torn} kill(s) left a torn line, {total} lines each once")


WRITER = LOAD + textwrap.dedent(
    """
    import hashlib
    path, n = Path(sys.argv[2]), 0
    print("ready", flush=True)
    while True:
        body = f"{n}:".encode() * (2000 + 7919 * n % 50000)
        durable.atomic_write_bytes(path, hashlib.sha256(body).hexdigest().encode() + b"\\n" + body)
        print(n, flush=True)  # acknowledged: version n is the file's
        n += 1
    """
)


@pytest.mark.process
def test_sigkill_mid_atomic_write_leaves_a_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "CURRENT"
    rng = random.Random(5)
    versions = set()
    for attempt in range(8):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(DURABLE), str(target)], stdout=subprocess.PIPE)
        acknowledged = -1
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
            if attempt % 2:  # every other run is killed after a write it acknowledged (then at random)
                acknowledged = int(proc.stdout.readline())
            time.sleep(rng.uniform(0.0, 0.05))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        if target.exists():
            data = target.read_bytes()
            assert _whole(data), f"a prefix of {len(data)} bytes is visible"
            version = data.partition(b"\n")[2].split(b":", 1)[0]
            versions.add(version)
            assert int(version) >= acknowledged, "an acknowledged write was lost"
        else:
            assert acknowledged < 0, "an acknowledged write was lost"
        orphans = temps(tmp_path)
        assert len(orphans) <= 1  # at most the temp of the write the kill interrupted
        for orphan in orphans:
            orphan.unlink()
    assert versions  # the kills did land after complete writes (at least the acknowledged ones)
