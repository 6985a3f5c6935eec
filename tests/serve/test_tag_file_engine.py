"""`tagsmith tag-file` engine flags and the one reader of catalog files (agent/bulk/source.py),
in-process: the Ray runs themselves are in test_tag_file_ray.py (process tier)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.bulk import plan_file


def _run(*args: str) -> tuple[int, str]:
    from serve.cli import app

    done = CliRunner().invoke(app, ["tag-file", *args])
    return done.exit_code, " ".join(done.output.split())


def test_engine_flags_are_checked_before_anything_runs(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "title": "t"}) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    code, text = _run(str(src), "-o", str(out), "--engine", "spark")
    assert code == 1 and "unknown engine 'spark'" in text
    code, text = _run(str(src), "-o", str(out), "--workers", "2")
    assert code == 1 and "--address and --workers are options of --engine ray" in text
    assert not out.exists()


def test_plan_skips_done_ids_and_reports_bad_lines_in_file_order(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": "a", "title": "first"}), "", "{oops", json.dumps({"id": "b", "title": "second"}),
             json.dumps({"id": "a", "title": "again"}), json.dumps({"id": "c", "title": ""}),
             json.dumps({"id": "d", "title": "fourth", "colour": "red"})]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    plan = plan_file(src, {"a"})
    assert [p.id for p in plan.todo] == ["b"] and plan.done == 1 and plan.total == 2
    assert [b["line"] for b in plan.bad] == [3, 5, 6, 7]
    assert "invalid JSON" in plan.bad[0]["error"] and plan.bad[1]["error"] == "duplicate id 'a' (first on line 1)"
    assert plan.bad[2]["error"].startswith("title") and plan.bad[3]["error"].startswith("colour")


def test_parquet_is_read_by_extension(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow", reason="pyarrow comes with the ray extra (the process tier tests it too)")
    import pyarrow.parquet as pq

    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "a", "title": "first", "description": None},
                                         {"id": None, "title": "no id", "description": "x"}]), src)
    plan = plan_file(src, set())
    assert [(p.id, p.description) for p in plan.todo] == [("a", "")]
    assert plan.bad == [{"line": 2, "error": "each product needs a non-empty \"id\" (used to resume)"}]
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="not a readable Parquet file"):
        plan_file(broken, set())
