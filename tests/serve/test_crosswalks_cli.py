"""``tagsmith crosswalk …`` and ``--crosswalk`` on ``tag`` / ``tag-file``, through typer's
CliRunner on the shop data directory (hashing embedder, knn)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.contract import TagResult
from serve.cli import app
from taxonomy import dump
from taxonomy.snapshot import Snapshot
from tests.serve.test_crosswalks_api import PUBLISHED, SKILLET, google_like

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture
def cli_env(shop_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in {"TAGSMITH_DATA_DIR": str(shop_dir), "TAGSMITH_EMBEDDER__BACKEND": "hashing",
                       "TAGSMITH_TAGGING__PIPELINE": "knn"}.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "g.json").write_text(dump(Snapshot(google_like()), "json"), encoding="utf-8")
    (tmp_path / "map.json").write_text(json.dumps(PUBLISHED), encoding="utf-8")
    return tmp_path


def test_crosswalk_commands(cli_env: Path) -> None:
    code, out = run("crosswalk", "import", "g", str(cli_env / "map.json"))
    assert code == 1 and "gtest" in out and "import it first" in out  # the target taxonomy is missing
    code, out = run("crosswalk", "list")
    assert code == 1 and "no crosswalk yet" in out
    code, out = run("crosswalk", "import-taxonomy", "gtest", "json", str(cli_env / "g.json"))
    assert code == 0 and "5 nodes as version 1" in out
    code, out = run("crosswalk", "import", "g", str(cli_env / "map.json"))
    assert code == 0 and "version 1" in out and "unknown source 1" in out and "unresolved source ghost/node" in out
    code, out = run("crosswalk", "list")
    assert code == 0 and "gtest v1" in out
    code, out = run("crosswalk", "show", "g", "kitchen/cookware/pots", "--json")
    shown = json.loads(out)
    assert (shown["status"], shown["source_id"], [t["id"] for t in shown["targets"]]) == ("ancestor", "kitchen/cookware", ["3"])
    code, out = run("crosswalk", "show", "g", "kitchen/nope")
    assert code == 1 and "no node" in out
    code, out = run("crosswalk", "show", "nope")
    assert code == 1 and "no crosswalk 'nope'" in out
    code, out = run("crosswalk", "broken", "g")
    assert code == 1 and "2 broken row(s)" in out  # ghost/node (unknown source), toys → 999 (unknown target)
    code, out = run("crosswalk", "set", "g", "ghost/node", "--remove", "--expected-version", "1")
    assert code == 0 and "version 2" in out
    code, out = run("crosswalk", "set", "g", "toys", "5", "--expected-version", "1")
    assert code == 1 and "changed meanwhile" in out
    code, out = run("crosswalk", "set", "g", "toys", "5")
    assert code == 0 and "version 3" in out
    code, out = run("crosswalk", "broken", "g", "--json")
    assert code == 0 and out == ""  # JSONL: no line, no broken row
    assert run("crosswalk", "broken", "g") == (0, "0 broken row(s)")


def test_tag_and_tag_file_with_a_crosswalk(cli_env: Path) -> None:
    assert run("crosswalk", "import-taxonomy", "gtest", "json", str(cli_env / "g.json"))[0] == 0
    assert run("crosswalk", "import", "g", str(cli_env / "map.json"))[0] == 0
    result = runner.invoke(app, ["tag", SKILLET["title"], "--crosswalk", "g", "--json"])
    assert result.exit_code == 0, result.output
    tagged = TagResult.model_validate_json(result.stdout)
    assert tagged.crosswalk is not None and tagged.crosswalk.status == "mapped"
    assert [t.id for t in tagged.crosswalk.tags] == ["4"]
    plain = runner.invoke(app, ["tag", SKILLET["title"], "--json"])
    assert "crosswalk" not in json.loads(plain.stdout)
    code, out = run("tag", SKILLET["title"], "--crosswalk", "g")
    assert code == 0 and "gtest v1: mapped" in out and "Skillets" in out
    code, out = run("tag", SKILLET["title"], "--crosswalk", "nope")
    assert code == 1 and "--crosswalk" in out

    src, dst = cli_env / "in.jsonl", cli_env / "out.jsonl"
    src.write_text(json.dumps(SKILLET) + "\n" + json.dumps({"id": "p", "title": "Kids puzzle 500 pieces"}) + "\n")
    code, out = run("tag-file", str(src), "-o", str(dst), "--crosswalk", "g")
    assert code == 0, out
    results = [TagResult.model_validate_json(line) for line in dst.read_text().splitlines()]
    assert [r.crosswalk.status if r.crosswalk else None for r in results] == ["mapped", "unmapped"]
    code, out = run("tag-file", str(src), "-o", str(cli_env / "other.jsonl"), "--crosswalk", "nope")
    assert code == 1 and not (cli_env / "other.jsonl").exists()
