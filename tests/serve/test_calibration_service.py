"""The service reports and uses the calibration of the index generation in use: /readyz,
the configured-threshold precedence, and the refit after feedback."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from retrieval import IndexStore, LexicalClassifier, build_index
from retrieval.publish import publish_index
from serve import tagging_state as tagging_state_module
from serve.runtime import embedder_from_settings
from taxonomy import TaxonomyStore
from tests.retrieval.test_calibration import craft_examples, craft_snapshot
from tests.serve.helpers import auth, make_keys, running_app, service_settings


@pytest.fixture
def craft_dir(tmp_path: Path) -> Path:
    """A data directory whose pool (7 categories x 12 examples) is big enough to calibrate."""
    data = tmp_path / "craft"
    settings = service_settings(data)
    data.mkdir()
    with TaxonomyStore(settings.taxonomy_db_url) as store:
        snap = store.import_document(craft_snapshot().document, expected_version=0, author="tests")
    embedder = embedder_from_settings(settings)
    index = build_index(embedder, craft_examples(12, seed=1, noisy=1))
    publish_index(IndexStore(data / "index"), index, embedder=embedder, snapshot=snap,
                  taxonomy_version=snap.version, lexical=LexicalClassifier.fit(list(index)))
    return data


def _until(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_readyz_reports_the_fitted_calibration_and_the_threshold_in_use(craft_dir: Path) -> None:
    shop_dir = craft_dir
    make_keys(shop_dir)
    with running_app(service_settings(shop_dir)) as client:
        body = client.get("/readyz").json()
        calibration = body["calibration"]
        assert calibration["method"] == "cross-fitted" and calibration["held_out"] > 0
        assert calibration["review_threshold_source"] == "fitted" and calibration["target_precision"] == 0.95
        assert 0.0 < calibration["review_threshold"] <= 1.0 and calibration["ece"] is not None
        stored = IndexStore(shop_dir / "index").manifest().calibration
        assert stored is not None and calibration["temperature"] == stored.temperature
        assert calibration["review_threshold"] == stored.knn_review_threshold  # the knn pipeline's
        assert "cross-fitted" in body["checks"]["calibration"]
    settings = service_settings(shop_dir, tagging={"review_threshold": 0.42})
    with running_app(settings) as client:
        calibration = client.get("/readyz").json()["calibration"]
        assert calibration["review_threshold"] == 0.42 and calibration["review_threshold_source"] == "configured"


def test_a_pool_too_small_to_hold_out_keeps_the_defaults_and_says_so(shop_dir: Path) -> None:
    """The shop pool: 13 categories of 3 examples, 26 could be held out (< 30)."""
    make_keys(shop_dir)
    with running_app(service_settings(shop_dir)) as client:
        calibration = client.get("/readyz").json()["calibration"]
        assert calibration["method"] == "default" and calibration["review_threshold_source"] == "default"
        assert calibration["review_threshold"] == 0.5 and "can be held out" in calibration["note"]


def test_feedback_publishes_with_the_previous_calibration_then_refits(
    craft_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop_dir = craft_dir
    monkeypatch.setattr(tagging_state_module, "LEXICAL_RETRAIN_DELAY_S", 0.2)
    keys = make_keys(shop_dir)
    store = IndexStore(shop_dir / "index")
    with running_app(service_settings(shop_dir)) as client:
        r = client.post("/v1/feedback", json={"product": {"id": "sku-1", "title": "Merino wool hiking socks"},
                                              "verdict": "correct", "tags": ["socks"]},
                        headers=auth(keys["feedback"]))
        assert r.status_code == 201, r.text
        assert r.json()["index_generation"] == "gen-000002"
        _until(lambda: store.current() is not None and store.current()[0] == "gen-000003")  # type: ignore[index]
        manifest = store.manifest()
        assert manifest.count == 85 and manifest.calibration is not None
        assert manifest.calibration.fitted and not manifest.calibration.refit_pending
        assert manifest.calibration.examples == 85
        _until(lambda: client.get("/readyz").json()["calibration"]["refit_pending"] is False)
