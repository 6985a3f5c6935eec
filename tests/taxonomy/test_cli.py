"""``tagsmith taxonomy`` through typer's CliRunner; TAGSMITH_DATA_DIR is a tmp dir (conftest)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serve.cli import app
from taxonomy import Snapshot, dump
from tests.taxonomy.helpers import apparel_document

runner = CliRunner()


def tagsmith(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["taxonomy", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def apparel_file(tmp_path: Path) -> Path:
    path = tmp_path / "apparel.json"
    path.write_text(dump(Snapshot(apparel_document()), "json"), encoding="utf-8")
    return path


def test_empty_store_says_how_to_fill_it() -> None:
    for command in (["export"], ["show", "x"], ["search", "x"], ["versions"], ["validate-tags", "x"]):
        code, _, err = tagsmith(*command)
        assert code == 1, command
        assert "empty" in err and "import" in err
    assert Path(os.environ["TAGSMITH_DATA_DIR"], "taxonomy.db").exists()


def test_import_export_round_trip(apparel_file: Path, tmp_path: Path) -> None:
    code, out, _ = tagsmith("import", "json", str(apparel_file))
    assert code == 0 and "version 1" in out and "8 nodes" in out
    code, out, _ = tagsmith("export", "--format", "json")
    assert code == 0
    assert json.loads(out)["nodes"][2]["path"] == "Apparel > Tops > Shirts"
    code, google, _ = tagsmith("export", "--format", "google")
    assert code == 0 and "shirts - Apparel > Tops > Shirts" in google
    (tmp_path / "g.txt").write_text(google, encoding="utf-8")
    code, out, _ = tagsmith("import", "google", str(tmp_path / "g.txt"))
    assert code == 0 and "version 2" in out
    code, out, _ = tagsmith("versions")
    assert code == 0 and "import" in out and "g.txt" in out
    code, out, _ = tagsmith("diff", "1", "2", "--json")
    assert code == 0
    diff = json.loads(out)
    assert diff["removed"] == ["old-fruit"] and diff["migration_map"] == {"old-fruit": None}
    code, out, _ = tagsmith("diff", "1", "2")
    assert code == 0 and "removed: 1" in out
    assert tagsmith("export", "--format", "csv")[0] == 1
    assert tagsmith("export", "--version", "9")[0] == 1


def test_show_search_and_validate(apparel_file: Path) -> None:
    assert tagsmith("import", "json", str(apparel_file))[0] == 0
    code, out, _ = tagsmith("show", "shoes", "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["path"] == "Apparel > Shoes" and shown["attributes"] == ["color", "brand", "size"]
    code, out, _ = tagsmith("show", "old-fruit")
    assert code == 0 and "resolves_to" in out and "fruit" in out
    code, _, err = tagsmith("show", "SHIRTS")
    assert code == 1 and "did you mean 'shirts'" in err
    code, out, _ = tagsmith("search", "tees")
    assert code == 0 and "tshirts" in out
    code, out, _ = tagsmith("validate-tags", "shirts", "fruit")
    assert code == 0 and out.count("ok") == 2
    code, out, _ = tagsmith("validate-tags", "shirts", "old-fruit", "Shirts ")
    assert code == 1
    assert "rejected  old-fruit" in out and "[deprecated]" in out and "suggestion: fruit" in out
    code, out, _ = tagsmith("validate-tags", "--leaf-only", "tops")
    assert code == 1 and "not_leaf" in out


def test_bad_imports_are_clean_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"nodes": [{"id": "a", "name": "A", "parent": "zz"}]}', encoding="utf-8")
    code, _, err = tagsmith("import", "json", str(bad))
    assert code == 1 and "unknown parent" in err and "Traceback" not in err
    code, _, err = tagsmith("import", "xml", str(bad))
    assert code == 1 and "unknown format" in err
    assert tagsmith("import", "json", str(tmp_path / "missing.json"))[0] == 2


def test_init_seeds_the_packaged_taxonomy_once() -> None:
    code, out, _ = tagsmith("init")
    assert code == 0 and "imported version 1" in out and "10281 nodes" in out
    code, out, _ = tagsmith("init")
    assert code == 0 and "already" in out
    code, out, _ = tagsmith("validate-tags", "gid://shopify/TaxonomyCategory/ap-2-1")
    assert code == 0 and "Bird Supplies" in out
