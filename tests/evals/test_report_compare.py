"""Report files and the regression gate (library and CLI exit codes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from evals.compare import compare_runs
from evals.metrics import compute_metrics
from evals.report import write_report

from .test_metrics import rec, toy

TAGSMITH = str(Path(sys.executable).parent / "tagsmith")
LEAVES = [["A", "A1", "A1a"], ["A", "A1", "A1b"], ["A", "A2", "A2a"], ["B", "B1", "B1a"]]


def make_run(path: Path, accuracy: float, *, off_taxonomy: int = 0, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    records = []
    for i in range(400):
        gold = LEAVES[int(rng.integers(4))]
        pred = gold if rng.random() < accuracy else LEAVES[int(rng.integers(4))]
        records.append(rec(i, gold, pred, float(rng.uniform(0.3, 1.0)), title=f"product {i}",
                           off_taxonomy=off_taxonomy if i == 0 else 0))
    with (path / "predictions.jsonl").open("w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)
    metrics = compute_metrics(records, toy(), n_boot=200, seed=1)
    metrics["pipeline"] = path.name
    metrics["items_per_second"] = 100.0
    (path / "metrics.json").write_text(json.dumps(metrics))
    (path / "run.json").write_text(json.dumps({"name": path.name, "pipeline": path.name}))
    return metrics


def test_gate_passes_equal_runs_and_fails_a_clear_regression(tmp_path: Path) -> None:
    base = make_run(tmp_path / "base", 0.8)
    same = make_run(tmp_path / "same", 0.8, seed=0)
    worse = make_run(tmp_path / "worse", 0.5, seed=2)
    assert compare_runs(base, same, margin=1.0).ok
    result = compare_runs(base, worse, margin=1.0)
    assert not result.ok
    failed = {r.metric for r in result.rows if not r.ok}
    assert {"waf1", "accuracy"} <= failed
    assert all(r.compared in {"ci95 lower", "ci95 upper"} for r in result.rows)
    # a huge margin tolerates it; off-taxonomy tags never are
    assert compare_runs(base, worse, margin=50.0).ok
    leaky = make_run(tmp_path / "leaky", 0.8, off_taxonomy=1)
    assert not compare_runs(base, leaky, margin=50.0).ok


def test_compare_cli_exit_codes(tmp_path: Path) -> None:
    make_run(tmp_path / "base", 0.8)
    make_run(tmp_path / "worse", 0.5, seed=2)
    ok = subprocess.run([TAGSMITH, "eval", "compare", str(tmp_path / "base"), str(tmp_path / "base")],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "PASS" in ok.stdout
    bad = subprocess.run([TAGSMITH, "eval", "compare", str(tmp_path / "base"), str(tmp_path / "worse")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "FAIL" in bad.stdout
    (tmp_path / "empty").mkdir()
    broken = subprocess.run([TAGSMITH, "eval", "compare", str(tmp_path / "base"), str(tmp_path / "empty")],
                            capture_output=True, text=True, timeout=120)
    assert broken.returncode == 2 and "not found" in broken.stderr


def test_report_writes_markdown_html_and_plots(tmp_path: Path) -> None:
    make_run(tmp_path / "hybrid", 0.85)
    make_run(tmp_path / "knn", 0.7, seed=3)
    md = write_report([tmp_path / "hybrid", tmp_path / "knn"], tmp_path / "report")
    text = md.read_text()
    assert "| WAF1 |" in text and "hybrid" in text and "knn" in text
    assert "Worst errors of knn" in text
    html = (tmp_path / "report" / "report.html").read_text()
    assert "<table>" in html and "calibration.png" in html
    for png in ("levels_f1.png", "calibration.png", "latency.png", "confusions_0.png", "confusions_1.png"):
        data = (tmp_path / "report" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
