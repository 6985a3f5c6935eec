"""Schemathesis against the app in-process: every operation of the OpenAPI schema, valid and
invalid generated requests, no 5xx and no response outside the documented schema. A quick
profile (a few requests per operation) runs in the default tier, the full one (>= 1,500
requests) in the slow tier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from serve.app import create_app
from tests.serve.helpers import auth, copy_data_dir, make_keys, service_settings

CHECKS = [
    not_a_server_error, status_code_conformance, content_type_conformance,
    response_schema_conformance, response_headers_conformance,
]
#: per profile: generated requests per operation and mode, and the least total sent
PROFILES: dict[str, tuple[dict[GenerationMode, int], int]] = {
    "quick": ({GenerationMode.POSITIVE: 6, GenerationMode.NEGATIVE: 4}, 150),
    "full": ({GenerationMode.POSITIVE: 50, GenerationMode.NEGATIVE: 30}, 1500),
}


@schemathesis.serializer("application/jsonl")
def _jsonl(ctx: Any, value: Any) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else str(value).encode("utf-8")


@pytest.fixture(scope="module")
def app(shop_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, dict[str, str]]]:
    data = copy_data_dir(shop_template, tmp_path_factory.mktemp("fuzz") / "data")
    keys = make_keys(data)
    # generous rate limit: the fuzzer is one client sending as fast as it can
    application = create_app(service_settings(data, limits={"rate_per_s": 1e6, "rate_burst": 1_000_000}))
    with asgi.get_client(application) as client:  # starts the lifespan in schemathesis' event loop
        assert client.get(f"http://{asgi.HOST}/healthz").status_code == 200
    state = application.state.tagsmith
    assert state.loaded.wait(180) and state.services is not None, state.load_error
    yield application, keys
    asgi.shutdown_lifespans()


def fuzz(operation: Any, mode: GenerationMode, examples: int, headers: dict[str, str], statuses: dict[int, int],
         failures: list[str]) -> int:
    """Send ``examples`` generated requests to one operation; returns how many were sent."""
    sent = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        nonlocal sent
        response = case.call(headers=headers)
        sent += 1
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except Exception as exc:  # collected, so one run reports every kind of failure
            failures.append(f"{operation.label} [{mode.value}] -> {response.status_code}: {str(exc)[:400]}")

    try:
        run()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE, operation.label  # nothing to make invalid
    return sent


@pytest.mark.parametrize("profile", ["quick", pytest.param("full", marks=pytest.mark.slow)])
def test_fuzz_every_operation(app: tuple[FastAPI, dict[str, str]], profile: str) -> None:
    examples, min_requests = PROFILES[profile]
    application, keys = app
    schema = schemathesis.openapi.from_asgi("/openapi.json", application)
    headers = auth(keys["admin"])
    sent: dict[str, int] = {}
    statuses: dict[int, int] = {}
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode, n in examples.items():
            sent[operation.label] = sent.get(operation.label, 0) + fuzz(operation, mode, n, headers, statuses, failures)
    total = sum(sent.values())
    print(f"{total} requests over {len(sent)} operations, statuses {dict(sorted(statuses.items()))}; "
          f"{len(failures)} failures")
    assert not failures, "\n".join(failures[:20])
    assert total >= min_requests, sent
    assert sum(n for code, n in statuses.items() if code < 300) >= min_requests // 5, statuses  # not all refused
    assert len(sent) == len(list(schema.get_all_operations()))
