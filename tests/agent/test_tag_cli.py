"""`tagsmith tag … --json` on the embedded default, as a user runs it (first start builds
the default taxonomy store and the index of shipped examples under TAGSMITH_DATA_DIR)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.contract import TagResult
from taxonomy import load_default_taxonomy

pytestmark = pytest.mark.process  # the installed CLI on the default taxonomy

TAGSMITH = str(Path(sys.executable).parent / "tagsmith")


def test_tag_json_returns_the_contract_on_the_default_taxonomy(tmp_path: Path) -> None:
    out = subprocess.run(
        [TAGSMITH, "tag", "Apple iPhone 12 128GB red, brand new sealed", "--json", "--crosswalk", "google"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "TAGSMITH_DATA_DIR": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = TagResult.model_validate(json.loads(out.stdout))
    snap = load_default_taxonomy()
    assert len(result.tags) == 1 and result.tags[0].id in snap.active_ids
    assert result.tags[0].path == list(snap.path_names(result.tags[0].id))
    assert result.taxonomy_version == 1 and result.evidence.neighbors
    assert (tmp_path / "taxonomy.db").is_file() and (tmp_path / "index").is_dir()
    # the packaged Shopify → Google crosswalk is installed on first start
    assert result.crosswalk is not None and result.crosswalk.taxonomy == "google"
    assert result.crosswalk.status in ("mapped", "ancestor") and result.crosswalk.tags


def test_unknown_pipeline_is_a_clean_error(tmp_path: Path) -> None:
    out = subprocess.run(
        [TAGSMITH, "tag", "x", "--pipeline", "magic"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "TAGSMITH_DATA_DIR": str(tmp_path)},
    )
    assert out.returncode == 1 and "unknown pipeline" in out.stderr
