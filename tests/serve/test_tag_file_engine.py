"""`tagsmith tag-file` engine flags and the one reader of catalog files (agent/bulk/source.py),
in-process: the Ray runs themselves are in test_tag_file_ray.py (process tier)."""

from __future__ import annotations

import json
from collections.abc import Iterator
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


def test_the_local_engine_reads_one_batch_ahead_of_the_tagging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tag-file`'s single-process path streams: when a batch is tagged, the input has been
    read only up to that batch (a reader that counts what it yielded proves it)."""
    import agent.bulk.source as source
    from agent.bulk import IdSet, scan_file, stream_todo
    from agent.contract import Product
    from serve.cli.tag_file_cmd import _batches

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"p{i}", "title": f"t{i}"}) + "\n" for i in range(1000)), encoding="utf-8")
    real = source.read_products
    read = [0]

    def counting(path: Path) -> Iterator[tuple[int, Product | None, str | None]]:
        read[0] = 0
        for item in real(path):
            read[0] += 1
            yield item

    monkeypatch.setattr(source, "read_products", counting)
    done = IdSet.of(["p3"])
    scan = scan_file(src, done)
    tagged: list[str] = []

    def tag_many(batch: list[Product]) -> list[str]:
        # everything read is in this batch or tagged before it (p3 skipped as done)
        assert read[0] == len(tagged) + len(batch) + (1 if len(tagged) + len(batch) > 3 else 0)
        tagged.extend(str(p.id) for p in batch)
        return [f"r-{p.id}" for p in batch]

    batches = list(_batches(stream_todo(src, done, scan, lambda bad: None), tag_many, 32))
    assert len(batches) == 32 and tagged == [f"p{i}" for i in range(1000) if i != 3]


def test_progress_lines_are_bounded_in_frequency_and_say_rate_and_eta() -> None:
    from serve.cli.progress_log import ProgressLog

    now = [100.0]
    lines: list[str] = []
    log = ProgressLog(10_000, 1_000, lines.append, every_s=30, clock=lambda: now[0])
    for _ in range(90):  # a batch of 10 every second for 90 s
        now[0] += 1
        log.advance(10)
    assert len(lines) == 3  # at 30, 60, 90 s: never more often than every 30 s
    assert lines[-1] == "tagged 1,900/10,000 (19.0 %), 10.0 products/s, elapsed 0:01:30, ETA 0:13:30"
    log.final()
    assert len(lines) == 3  # the line at 90 s said it all
    now[0] += 1
    log.advance(5)
    log.final()
    assert len(lines) == 4 and lines[-1].startswith("tagged 1,905/10,000")
    silent = ProgressLog(10, 0, lines.append, every_s=0, clock=lambda: now[0])
    silent.advance(10)
    silent.final()
    assert len(lines) == 4
