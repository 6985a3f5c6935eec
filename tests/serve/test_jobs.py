"""Batch jobs in-process: creation (validated whole, idempotent), progress, results, cancel, delete."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from agent.contract import TagResult
from agent.llm.fake import FixedLatencyBackend
from serve.jobs import JobInputParser, JobItem, JobStore, JobWorker
from serve.jobs.store import items_table
from serve.metrics import Metrics
from tests.serve.helpers import (
    assert_error,
    auth,
    copy_data_dir,
    make_keys,
    running_app,
    service_settings,
)

TITLES = ["Cotton tee", "Wool socks", "iPhone 13 mini", "Cast iron skillet", "Jigsaw puzzle 500", "USB-C cable"]


def jsonl(n: int, prefix: str = "c") -> bytes:
    lines = [{"custom_id": f"{prefix}{i}", "product": {"id": f"sku-{i}", "title": TITLES[i % len(TITLES)]}} for i in range(n)]
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def wait_for(client: TestClient, job_id: str, headers: dict[str, str], states: set[str], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if job["state"] in states:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not in {states} after {timeout} s: {job}")


@pytest.fixture(scope="module")
def env(shop_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    data = copy_data_dir(shop_template, tmp_path_factory.mktemp("jobs") / "data")
    keys = make_keys(data)
    settings = service_settings(data, limits={"max_job_items": 100, "max_job_bytes": 20_000}, jobs={"batch_size": 7})
    with running_app(settings) as client:
        yield client, keys


def test_a_job_runs_to_completion_with_each_custom_id_once(env: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = env
    t = auth(keys["tags"])
    r = client.post("/v1/jobs", content=jsonl(50), headers={**t, "content-type": "application/jsonl"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}" and job["counts"]["total"] == 50
    assert job["state"] in ("queued", "running") and job["results_url"] == f"/v1/jobs/{job['id']}/results"
    done = wait_for(client, job["id"], t, {"completed"})
    assert done["counts"] == {"total": 50, "succeeded": 50, "failed": 0} and done["progress"] == 1.0
    assert done["started_at"] and done["finished_at"]
    results = client.get(done["results_url"], headers=t)
    assert results.status_code == 200 and results.headers["content-type"].startswith("application/jsonl")
    lines = [json.loads(line) for line in results.text.splitlines()]
    assert [x["custom_id"] for x in lines] == [f"c{i}" for i in range(50)]
    assert all(x["error"] is None and x["degraded"] is False and x["result"]["tags"] for x in lines)
    assert lines[3]["result"]["id"] == "sku-3" and lines[3]["result"]["tags"][0]["id"] == "kitchen/cookware/pans"
    tail = client.get(f"{done['results_url']}?offset=45", headers=t).text.splitlines()
    assert [json.loads(x)["custom_id"] for x in tail] == [f"c{i}" for i in range(45, 50)]
    assert_error(client.post(f"/v1/jobs/{job['id']}/cancel", headers=t), 409, "conflict")
    listed = client.get("/v1/jobs", headers=t).json()
    assert job["id"] in [j["id"] for j in listed["items"]]
    assert client.delete(f"/v1/jobs/{job['id']}", headers=t).status_code == 204
    assert_error(client.get(f"/v1/jobs/{job['id']}", headers=t), 404, "not_found")


def test_idempotency_key_makes_retries_safe(env: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = env
    t = {**auth(keys["tags"]), "Idempotency-Key": "upload-2024-06-01"}
    first = client.post("/v1/jobs", content=jsonl(5, "i"), headers=t)
    again = client.post("/v1/jobs", content=jsonl(5, "i"), headers=t)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    error = assert_error(client.post("/v1/jobs", content=jsonl(6, "i"), headers=t), 422, "idempotency_key_reused")
    assert first.json()["id"] in error["message"]
    # keys are per API key: another client's identical key is another job
    other = client.post("/v1/jobs", content=jsonl(5, "i"), headers={**auth(keys["admin"]), "Idempotency-Key": "upload-2024-06-01"})
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
    wait_for(client, first.json()["id"], auth(keys["tags"]), {"completed"})


def test_jobs_belong_to_their_key(env: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = env
    job = client.post("/v1/jobs", content=jsonl(3, "o"), headers=auth(keys["tags"])).json()
    other = auth(keys["tags+feedback"])
    assert_error(client.get(f"/v1/jobs/{job['id']}", headers=other), 404, "not_found")
    assert_error(client.get(f"/v1/jobs/{job['id']}/results", headers=other), 404, "not_found")
    assert job["id"] not in [j["id"] for j in client.get("/v1/jobs", headers=other).json()["items"]]
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth(keys["admin"])).status_code == 200


@pytest.mark.parametrize(
    ("body", "code", "first_loc"),
    [
        (b'{"custom_id": "a", "product": {"title": "x"}}\n{"custom_id": "b", "product": {"title": ""}}\n',
         "invalid_job_input", ["line", 2, "product", "title"]),
        (b'{"custom_id": "a", "product": {"title": "x"}}\nnot json\n', "invalid_job_input", ["line", 2]),
        (b'{"custom_id": "a", "product": {"title": "x"}}\n{"custom_id": "a", "product": {"title": "y"}}\n',
         "invalid_job_input", ["line", 2, "custom_id"]),
        (b'{"custom_id": "a", "title": "x"}\n', "invalid_job_input", ["line", 1, "product"]),
        (b'{"custom_id": "", "product": {"title": "x"}}\n', "invalid_job_input", ["line", 1, "custom_id"]),
        (b"\n\n", "invalid_job_input", None),
        (b"\xff\xfe{}", "invalid_job_input", None),
    ],
)
def test_invalid_input_is_refused_whole_with_line_numbers(
    env: tuple[TestClient, dict[str, str]], body: bytes, code: str, first_loc: list[object] | None
) -> None:
    client, keys = env
    t = auth(keys["tags"])
    before = client.get("/v1/jobs", headers=t).json()["total"]
    error = assert_error(client.post("/v1/jobs", content=body, headers=t), 422, code)
    if first_loc is not None:
        assert error["details"][0]["loc"] == first_loc
    assert client.get("/v1/jobs", headers=t).json()["total"] == before  # nothing was created


def test_job_size_limits(env: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = env
    t = auth(keys["tags"])
    error = assert_error(client.post("/v1/jobs", content=jsonl(101), headers=t), 422, "batch_too_large")
    assert "at most 100 lines" in error["message"]
    big = jsonl(1).replace(b'"Cotton tee"', b'"' + b"x" * 900 + b'"') * 30  # > 20,000 bytes
    assert_error(client.post("/v1/jobs", content=big, headers=t), 413, "request_too_large")


def test_cancel_a_running_and_a_queued_job(shop_dir: Path) -> None:
    keys = make_keys(shop_dir)
    settings = service_settings(shop_dir, tagging={"pipeline": "rag"}, jobs={"batch_size": 2})
    with running_app(settings, llm=FixedLatencyBackend(0.05)) as client:
        t = auth(keys["tags"])
        running = client.post("/v1/jobs", content=jsonl(100, "r"), headers=t).json()
        queued = client.post("/v1/jobs", content=jsonl(10, "q"), headers=t).json()
        deadline = time.monotonic() + 60
        while client.get(f"/v1/jobs/{running['id']}", headers=t).json()["counts"]["succeeded"] < 4:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert_error(client.delete(f"/v1/jobs/{running['id']}", headers=t), 409, "conflict")
        assert client.post(f"/v1/jobs/{queued['id']}/cancel", headers=t).json()["state"] == "cancelled"
        assert client.post(f"/v1/jobs/{running['id']}/cancel", headers=t).json()["state"] == "cancelled"
        time.sleep(0.5)  # the worker notices at its next batch
        stopped = client.get(f"/v1/jobs/{running['id']}", headers=t).json()
        lines = client.get(f"/v1/jobs/{running['id']}/results", headers=t).text.splitlines()
        assert 4 <= len(lines) == stopped["counts"]["succeeded"] < 100
        assert len({json.loads(x)["custom_id"] for x in lines}) == len(lines)
        assert client.get(f"/v1/jobs/{queued['id']}/results", headers=t).text == ""
        assert client.delete(f"/v1/jobs/{queued['id']}", headers=t).status_code == 204


def test_the_worker_fails_a_job_on_a_corrupt_stored_line_after_the_batches_before_it(tmp_path: Path) -> None:
    """The input is read batch by batch (never listed whole): a line corrupted in the database
    after acceptance fails the job when its batch comes, after the batches before it."""
    store = JobStore(tmp_path / "jobs" / "jobs.db", tmp_path / "jobs", batch_size=2)
    staged = store.stage()
    staged.write(JobInputParser(max_items=10, max_line_bytes=4096, max_depth=64).feed(jsonl(5)))
    staged.seal()
    job, _ = store.commit(staged, "owner", request_sha256="0" * 64)
    with store._write() as conn:
        conn.execute(update(items_table).where(items_table.c.job_id == job.id, items_table.c.seq == 3)
                     .values(item="{broken"))

    def refuse(items: Sequence[JobItem]) -> list[TagResult]:
        raise RuntimeError("no tagger here")  # every item gets an error line: enough to count

    worker = JobWorker(store, refuse, Metrics(), poll_s=0.05)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while (record := store.get(job.id)) is not None and record.state in ("queued", "running"):
            assert time.monotonic() < deadline, record
            time.sleep(0.05)
        results = [json.loads(x) for x in store.read_results(job.id)]
    finally:
        worker.stop()
        store.close()
    assert record is not None and record.state == "failed" and "job input unreadable" in (record.message or "")
    assert [r["custom_id"] for r in results] == ["c0", "c1"]  # the first batch, before the bad line
    assert record.failed == 2 and results[0]["error"]["code"] == "tagging_failed"
