"""Streamed job ingestion (issue 18, finding 3): uploads are checked as they arrive, reading
stops at the first problems, uploads received at once are bounded, and nothing is left
behind by a refused or abandoned upload; job files are private (finding 8).

Uploads are driven at the ASGI level, in the app's event loop (the TestClient's portal): a
TestClient reads a generator body whole before the app sees it, and these tests are about
what the app reads, chunk by chunk."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from starlette.types import Message

from serve.jobs import JobInputError, JobInputParser, JobStore
from serve.jobs.store import INPUT, UPLOAD_PREFIX
from tests.serve.helpers import (
    assert_error,
    auth,
    copy_data_dir,
    make_keys,
    running_app,
    service_settings,
)
from tests.serve.test_jobs import jsonl

MAX_ITEMS = 5000
MAX_JOB_BYTES = 4 << 20
CHUNK = 300 << 10


@dataclass
class Upload:
    """One POST /v1/jobs as the app sees it: each chunk handed over on request."""

    chunks: Iterable[bytes]
    key: str
    hold: threading.Event | None = None  # when given: wait for it before ending the body
    disconnect_after: int | None = None  # chunks sent before the client vanishes
    pulled: int = 0
    reading: threading.Event = field(default_factory=threading.Event)
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


async def drive(client: TestClient, upload: Upload) -> Upload:
    """Run the upload through the app (no Content-Length: a chunked upload)."""
    source = iter(upload.chunks)
    finished = anyio.Event()
    ended = False

    async def receive() -> Message:
        nonlocal ended
        upload.reading.set()
        if ended:
            await finished.wait()
            return {"type": "http.disconnect"}
        if upload.disconnect_after is not None and upload.pulled >= upload.disconnect_after:
            ended = True
            return {"type": "http.disconnect"}
        chunk = next(source, None)
        if chunk is None:
            if upload.hold is not None:
                deadline = time.monotonic() + 60
                while not upload.hold.is_set():
                    assert time.monotonic() < deadline, "the held upload was never released"
                    await anyio.sleep(0.01)
            ended = True
            return {"type": "http.request", "body": b"", "more_body": False}
        upload.pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            upload.status = message["status"]
            upload.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            upload.body += message.get("body", b"")
            if not message.get("more_body", False):
                finished.set()

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/jobs", "raw_path": b"/v1/jobs", "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 50000), "server": ("testserver", 80), "state": {},
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {upload.key}".encode()),
                    (b"content-type", b"application/jsonl"), (b"transfer-encoding", b"chunked")],
    }
    await client.app(scope, receive, send)
    return upload


def post(client: TestClient, upload: Upload) -> Upload:
    return client.portal.call(drive, client, upload)  # type: ignore[union-attr]


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def good(chunks: int) -> Iterator[bytes]:
    """Valid lines, MAX_ITEMS // 2 a chunk, made only when pulled."""
    for n in range(chunks):
        yield jsonl(MAX_ITEMS // 2, f"g{n}-")


def leftovers(data: Path) -> list[str]:
    return sorted(p.name for p in (data / "jobs").glob(f"{UPLOAD_PREFIX}*"))


@pytest.fixture(scope="module")
def env(shop_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str], Path]]:
    data = copy_data_dir(shop_template, tmp_path_factory.mktemp("ingest") / "data")
    keys = make_keys(data)
    settings = service_settings(data, limits={
        "max_job_items": MAX_ITEMS, "max_body_bytes": 4096, "max_concurrent_uploads": 2,
        "max_job_bytes": MAX_JOB_BYTES,
    })
    with running_app(settings) as client:
        yield client, keys, data


def job_count(client: TestClient, key: str) -> int:
    total: int = client.get("/v1/jobs", headers=auth(key)).json()["total"]
    return total


# ---- streaming --------------------------------------------------------------------------
def test_a_chunked_upload_is_checked_and_staged_as_it_streams(env: tuple[TestClient, dict[str, str], Path]) -> None:
    client, keys, data = env
    body = jsonl(1000, "s")
    done = post(client, Upload(pieces(body, 777), keys["tags"]))  # lines split across chunks
    assert done.status == 202, done.body
    job = done.json()
    assert job["counts"]["total"] == 1000 and done.pulled == len(pieces(body, 777))
    store = JobStore(data / "jobs" / "jobs.db")
    assert [i.custom_id for i in store.items(job["id"])] == [f"s{i}" for i in range(1000)]
    store.close()
    assert leftovers(data) == []

    bad = body.replace(b'"custom_id": "s500"', b'"custom_id": ""')
    refused = post(client, Upload(pieces(bad, 777), keys["tags"]))
    assert refused.status == 422 and refused.json()["error"]["details"][0]["loc"] == ["line", 501, "custom_id"]
    assert leftovers(data) == []


def test_reading_stops_at_the_first_problems(env: tuple[TestClient, dict[str, str], Path]) -> None:
    client, keys, data = env
    before = job_count(client, keys["tags"])
    bad = b"not json\n" * (CHUNK // 9)
    upload = post(client, Upload(chain([bad], good(200)), keys["tags"]))  # ~40 MiB if all read
    assert upload.status == 422, upload.body
    error = upload.json()["error"]
    assert error["code"] == "invalid_job_input" and error["message"].startswith("20+ invalid line(s); first on line 1")
    assert [d["loc"] for d in error["details"]] == [["line", n] for n in range(1, 21)]
    assert upload.pulled <= 2, f"read {upload.pulled} of 201 chunks after the first problems"

    too_many = post(client, Upload(good(200), keys["tags"]))
    assert too_many.status == 422 and too_many.json()["error"]["code"] == "batch_too_large"
    assert too_many.pulled <= 4, f"read {too_many.pulled} of 200 chunks past max_job_items"

    long_line = b'{"custom_id": "x", "product": {"title": "' + b"y" * 10_000 + b'"}}\n'
    too_long = post(client, Upload(chain(pieces(long_line, 1000), good(200)), keys["tags"]))
    assert too_long.status == 422, too_long.body
    assert "line longer than 4096 bytes" in too_long.json()["error"]["message"] and too_long.pulled <= 300
    assert job_count(client, keys["tags"]) == before and leftovers(data) == []


def test_a_chunked_upload_over_the_size_limit_is_a_413(env: tuple[TestClient, dict[str, str], Path]) -> None:
    client, keys, data = env
    before = job_count(client, keys["tags"])

    def lines() -> Iterator[bytes]:  # valid, 3 KB each, 1,500 (< MAX_ITEMS) make 4.5 MB
        for n in range(1500):
            yield json.dumps({"custom_id": f"big{n}", "product": {"title": "Mug", "description": "d" * 3000}}).encode() + b"\n"

    upload = post(client, Upload(lines(), keys["tags"]))
    assert upload.status == 413 and upload.json()["error"]["code"] == "request_too_large"
    assert upload.pulled < 1500 and job_count(client, keys["tags"]) == before and leftovers(data) == []


def test_an_abandoned_upload_leaves_nothing(env: tuple[TestClient, dict[str, str], Path]) -> None:
    client, keys, data = env
    before = job_count(client, keys["tags"])
    upload = post(client, Upload(pieces(jsonl(500, "a"), 1000), keys["tags"], disconnect_after=5))
    assert upload.status == 422 and upload.json()["error"]["code"] == "upload_incomplete"
    assert job_count(client, keys["tags"]) == before and leftovers(data) == []


def test_uploads_received_at_once_are_bounded(env: tuple[TestClient, dict[str, str], Path]) -> None:
    client, keys, data = env
    assert client.portal is not None
    release = threading.Event()
    held = [Upload([jsonl(10, f"h{n}-")], keys["tags"], hold=release) for n in range(2)]
    futures = [client.portal.start_task_soon(drive, client, upload) for upload in held]
    try:
        for upload in held:
            assert upload.reading.wait(30), "a held upload never started reading"
        refused = client.post("/v1/jobs", content=jsonl(3, "third"), headers=auth(keys["tags+feedback"]))
        error = assert_error(refused, 503, "uploads_busy")
        assert "limits.max_concurrent_uploads" in error["message"] and int(refused.headers["retry-after"]) >= 1
    finally:
        release.set()
    assert [f.result(timeout=60).status for f in futures] == [202, 202]
    # the slots are free again, including those of refused uploads
    assert client.post("/v1/jobs", content=b"nope\n", headers=auth(keys["tags"])).status_code == 422
    for n in range(3):
        assert client.post("/v1/jobs", content=jsonl(3, f"after{n}-"), headers=auth(keys["tags"])).status_code == 202
    assert leftovers(data) == []


def test_job_files_are_private(env: tuple[TestClient, dict[str, str], Path]) -> None:
    client, keys, data = env
    job = client.post("/v1/jobs", content=jsonl(3, "p"), headers=auth(keys["tags"])).json()
    root = data / "jobs"

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert client.get(f"/v1/jobs/{job['id']}", headers=auth(keys["tags"])).status_code == 200
    assert mode(root) == 0o700 and mode(root / "jobs.db") == 0o600  # the jobs' input and results live there
    staged = JobStore(root / "jobs.db", root).stage()  # an upload being received
    assert staged.path is not None and mode(staged.path) == 0o700 and mode(staged.path / INPUT) == 0o600
    staged.discard()


# ---- the parts ----------------------------------------------------------------------------
def test_the_parser_gives_the_same_items_wherever_the_chunks_split() -> None:
    body = (jsonl(3, "u") + '{"custom_id": "é€😀", "product": {"title": "Tasse à café ☕"}}\r\n\n'.encode()
            + jsonl(2, "v").rstrip(b"\n"))  # no newline after the last line
    whole = [i.custom_id for i in _parse([body])]
    assert whole == ["u0", "u1", "u2", "é€😀", "v0", "v1"]
    for cut in range(1, len(body)):
        assert [i.custom_id for i in _parse([body[:cut], body[cut:]])] == whole
    assert [i.custom_id for i in _parse(pieces(body, 1))] == whole


def test_the_parser_reports_line_numbers_across_chunks() -> None:
    body = jsonl(2, "a") + b"\n" + b"\xff\xfe{}\n" + jsonl(1, "a")
    with pytest.raises(JobInputError) as caught:
        _parse(pieces(body, 5))
    assert [(p.line, p.loc) for p in caught.value.problems] == [(4, ()), (5, ("custom_id",))]
    assert "not UTF-8" in caught.value.problems[0].message and "first on line 1" in caught.value.problems[1].message


def _parse(chunks: list[bytes]) -> list[Any]:
    parser = JobInputParser(max_items=100, max_line_bytes=4096, max_depth=64)
    items = [item for chunk in chunks for item in parser.feed(chunk)]
    return items + parser.finish()


def test_a_staged_upload_is_published_whole_or_not_at_all(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs" / "jobs.db", tmp_path / "jobs")
    try:
        items = JobInputParser(max_items=10, max_line_bytes=4096, max_depth=64).feed(jsonl(3))
        staged = store.stage()
        staged.write(items)
        staged.seal()
        assert staged.path is not None and staged.path.name.startswith(UPLOAD_PREFIX)
        assert store.list_jobs(None)[1] == 0  # staged, not visible
        job, created = store.commit(staged, "owner", request_sha256="x" * 64)
        assert created and job.total == 3 and [i.custom_id for i in store.items(job.id)] == ["c0", "c1", "c2"]
        assert leftovers(tmp_path) == []

        live = store.stage()  # an upload in progress, here or in another process
        crashed = [tmp_path / "jobs" / f"{UPLOAD_PREFIX}crashed",  # nobody holds it
                   tmp_path / "jobs" / "job_crashed"]  # an older tagsmith's job directory without its row
        for path in crashed:
            path.mkdir()
        assert store.remove_orphans() == 0  # just made: maybe an upload about to lock it
        old = time.time() - 120
        assert live.path is not None
        for path in [*crashed, live.path]:
            os.utime(path, (old, old))
        assert store.remove_orphans() == 2
        assert live.path is not None and live.path.is_dir()
        live.discard()
        assert not any(p.is_dir() for p in (tmp_path / "jobs").iterdir())
    finally:
        store.close()
