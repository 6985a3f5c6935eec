"""``tagsmith index`` in-process: build, add, stats, search, and a clean error without an index
(on the hashing embedder: this is about the commands, not the model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from retrieval import HashingEmbedder
from retrieval.examples import examples_to_jsonl
from serve.cli import app
from taxonomy import dump

from .conftest import TINY_EXAMPLES, tiny_snapshot

runner = CliRunner()


def test_build_add_stats_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGSMITH_EMBEDDER__BACKEND", "hashing")
    tax = tmp_path / "tiny.json"
    tax.write_text(dump(tiny_snapshot()))
    examples = tmp_path / "examples.jsonl"
    examples.write_text(examples_to_jsonl(TINY_EXAMPLES[:6]))
    more = tmp_path / "more.jsonl"
    more.write_text(examples_to_jsonl(TINY_EXAMPLES[6:]))

    out = runner.invoke(app, ["index", "stats"])
    assert out.exit_code == 1 and "no index has been published" in out.output

    out = runner.invoke(app, ["index", "build", "--examples", str(examples), "--taxonomy", str(tax)])
    assert out.exit_code == 0, out.output
    assert "published gen-000001: 6 examples" in out.output
    assert "1 tag id(s) are not active" in out.output  # socks-old: deprecated, no replacement

    # a re-run is served by the embedding cache
    out = runner.invoke(app, ["index", "build", "--examples", str(examples), "--taxonomy", str(tax)])
    assert "published gen-000002" in out.output and "6 hits, 0 encoded" in out.output

    out = runner.invoke(app, ["index", "add", str(more), "--taxonomy", str(tax)])
    assert out.exit_code == 0, out.output
    assert "published gen-000003: 8 examples" in out.output

    out = runner.invoke(app, ["index", "stats", "--json"])
    info = json.loads(out.stdout)
    assert info["count"] == 8 and info["dim"] == HashingEmbedder().dim and info["generations"] == ["gen-000002", "gen-000003"]
    # 8 examples of 7 categories: too few to hold out, and the stats say so
    assert info["calibration"]["method"] == "default" and "single example" in info["calibration"]["note"]
    assert "calibration: defaults" in runner.invoke(app, ["index", "add", str(more), "--taxonomy", str(tax)]).output

    out = runner.invoke(app, ["index", "search", "filter coffee maker", "--taxonomy", str(tax), "--json", "-k", "2"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)  # stderr carries the model loading bar
    assert result["neighbours"][0]["id"] == "e8" and len(result["neighbours"]) == 2
    assert result["candidates"][0]["id"] == "coffee-makers"
    assert result["candidates"][0]["path"] == "Kitchen > Coffee Makers"
