"""Report files and the regression gate (library and CLI exit codes)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from evals.compare import compare_runs, load_metrics
from evals.metrics import compute_metrics
from evals.report import load_run, write_report
from serve.cli import app

from .toy import LEAVES, rec, toy, write_toy_taxonomy

TAGSMITH = str(Path(sys.executable).parent / "tagsmith")


def make_run(path: Path, accuracy: float, *, off_taxonomy: int = 0, seed: int = 0,
             taxonomy: Path | None = None, n: int = 400) -> dict[str, Any]:
    """A run directory as the runner writes it: predictions without timings, timings.jsonl,
    metrics.json and run.json."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    records = []
    for i in range(n):
        gold = LEAVES[int(rng.integers(4))]
        pred = gold if rng.random() < accuracy else LEAVES[int(rng.integers(4))]
        records.append(rec(i, gold, pred, float(rng.uniform(0.3, 1.0)), title=f"product {i}",
                           off_taxonomy=off_taxonomy if i == 0 else 0))
    with (path / "predictions.jsonl").open("w") as fh:
        fh.writelines(json.dumps({k: v for k, v in r.items() if k != "latency_ms"}) + "\n" for r in records)
    with (path / "timings.jsonl").open("w") as fh:
        fh.writelines(json.dumps({"id": r["id"], "latency_ms": r["latency_ms"], "wall_ms": 1.0}) + "\n" for r in records)
    metrics = compute_metrics(records, toy(), n_boot=200, seed=1)
    metrics.update(pipeline=path.name, items_per_second=100.0,
                   config={"dataset": "/data/dev.jsonl", "taxonomy": str(taxonomy or ""), "seed": 0, "limit": None})
    (path / "metrics.json").write_text(json.dumps(metrics))
    (path / "run.json").write_text(json.dumps({"name": path.name, "pipeline": path.name,
                                               "config": metrics["config"], "versions": {"tagsmith": "0.1.0"}}))
    return metrics


def test_gate_passes_equal_runs_and_fails_a_clear_regression(tmp_path: Path) -> None:
    base = make_run(tmp_path / "base", 0.8)
    same = make_run(tmp_path / "same", 0.8, seed=0)
    worse = make_run(tmp_path / "worse", 0.5, seed=2)
    assert compare_runs(base, same, margin=1.0).ok
    result = compare_runs(base, worse, margin=1.0)
    assert not result.ok
    failed = {r.metric for r in result.rows if not r.ok}
    assert {"waf1", "accuracy", "macro_f1", "hierarchical_f1"} <= failed
    assert all(r.compared in {"ci95 lower", "ci95 upper"} for r in result.rows)
    assert {r.verdict for r in result.rows if r.metric == "waf1"} == {"worse"}
    assert any(line.startswith("waf1: ci95 lower") for line in result.failures)
    waf1 = next(r for r in result.rows if r.metric == "waf1")
    assert (waf1.base, waf1.new) == (base["ci95"]["waf1"][0], worse["ci95"]["waf1"][0])
    assert waf1.delta == pytest.approx(waf1.new - waf1.base, abs=1e-3)
    # a huge margin tolerates it; off-taxonomy tags never are
    assert compare_runs(base, worse, margin=50.0).ok
    leaky = make_run(tmp_path / "leaky", 0.8, off_taxonomy=1)
    leaky_result = compare_runs(base, leaky, margin=50.0)
    assert not leaky_result.ok and all(r.ok for r in leaky_result.rows)
    assert leaky_result.failures == ("off_taxonomy_rate 0.0025 > 0",)


def _metrics(**changes: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"n": 100, "waf1": 80.0, "accuracy": 75.0, "macro_f1": 60.0, "hierarchical": {"f1": 82.0},
                         "ece": 5.0, "off_taxonomy_rate": 0.0,
                         "ci95": {"waf1": [78.0, 82.0], "accuracy": [73.0, 77.0], "macro_f1": [57.0, 63.0],
                                  "hierarchical_f1": [80.0, 84.0], "ece": [4.0, 6.0]}}
    for key, value in changes.items():
        if key.startswith("ci_"):
            m["ci95"][key[3:]] = value
        else:
            m[key] = value
    return m


def test_gate_margin_boundary_ece_and_point_fallback() -> None:
    base = _metrics()
    # lower bound exactly `margin` below passes; a hair more fails
    assert compare_runs(base, _metrics(ci_waf1=[77.0, 83.0]), margin=1.0).ok
    assert not compare_runs(base, _metrics(ci_waf1=[76.99, 83.0]), margin=1.0).ok
    # ECE: lower is better, its upper bound may rise by at most the margin
    ece_worse = compare_runs(base, _metrics(ci_ece=[4.0, 7.5]), margin=1.0)
    assert [r.metric for r in ece_worse.rows if not r.ok] == ["ece"]
    assert next(r for r in ece_worse.rows if r.metric == "ece").compared == "ci95 upper"
    assert compare_runs(base, _metrics(ci_ece=[1.0, 2.0]), margin=0.0).ok  # better calibration
    # no CI on one side: point values, never a bound against a point
    no_ci = _metrics(waf1=78.5)
    del no_ci["ci95"]
    result = compare_runs(base, no_ci, margin=1.0)
    waf1 = next(r for r in result.rows if r.metric == "waf1")
    assert (waf1.compared, waf1.base, waf1.new, waf1.ok) == ("point", 80.0, 78.5, False)
    # NaN never passes
    assert not compare_runs(base, _metrics(ci_accuracy=[float("nan"), 1.0]), margin=1.0).ok


def test_gate_refuses_bad_input_and_warns_on_different_data() -> None:
    with pytest.raises(ValueError, match="margin"):
        compare_runs(_metrics(), _metrics(), margin=-1.0)
    broken = _metrics()
    del broken["hierarchical"], broken["ci95"]
    with pytest.raises(ValueError, match="new metrics have no usable 'hierarchical_f1'"):
        compare_runs(_metrics(), broken, margin=1.0)
    no_off = _metrics()
    del no_off["off_taxonomy_rate"]
    with pytest.raises(ValueError, match="off_taxonomy_rate"):
        compare_runs(_metrics(), no_off, margin=1.0)
    other = _metrics(n=50, config={"dataset": "/x/test.jsonl"})
    base = _metrics(config={"dataset": "/y/dev.jsonl"})
    assert compare_runs(base, other, margin=1.0).warnings == (
        "the runs scored different numbers of items (100 vs 50)",
        "the runs used different datasets (dev.jsonl vs test.jsonl)",
    )
    assert compare_runs(base, base, margin=1.0).warnings == ()


@pytest.mark.process
def test_compare_cli_exit_codes(tmp_path: Path) -> None:
    make_run(tmp_path / "base", 0.8)
    make_run(tmp_path / "worse", 0.5, seed=2)
    ok = subprocess.run([TAGSMITH, "eval", "compare", str(tmp_path / "base"), str(tmp_path / "base")],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "PASS" in ok.stdout
    bad = subprocess.run([TAGSMITH, "eval", "compare", str(tmp_path / "base"), str(tmp_path / "worse" / "metrics.json")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "FAIL" in bad.stdout and "waf1" in bad.stdout
    (tmp_path / "empty").mkdir()
    broken = subprocess.run([TAGSMITH, "eval", "compare", str(tmp_path / "base"), str(tmp_path / "empty")],
                            capture_output=True, text=True, timeout=120)
    assert broken.returncode == 2 and "not found" in broken.stderr


def test_compare_cli_bad_input_in_process(tmp_path: Path) -> None:
    make_run(tmp_path / "base", 0.8)
    (tmp_path / "garbage.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    runner = CliRunner()
    for target, message in [("garbage.json", "not valid JSON"), ("other.json", "not a tagsmith metrics file")]:
        result = runner.invoke(app, ["eval", "compare", str(tmp_path / "base"), str(tmp_path / target)])
        assert result.exit_code == 2 and message in result.output
    missing = runner.invoke(app, ["eval", "compare", str(tmp_path / "base"), str(tmp_path / "nope")])
    assert missing.exit_code == 2
    leaky = make_run(tmp_path / "leaky", 0.8, off_taxonomy=1)
    result = runner.invoke(app, ["eval", "compare", str(tmp_path / "base"), str(tmp_path / "leaky"), "--margin", "50"])
    assert leaky["off_taxonomy_rate"] > 0 and result.exit_code == 1 and "off_taxonomy_rate" in result.output


def test_report_writes_markdown_html_and_plots(tmp_path: Path) -> None:
    taxonomy = write_toy_taxonomy(tmp_path / "toy.json")
    make_run(tmp_path / "hybrid", 0.85, taxonomy=taxonomy)
    make_run(tmp_path / "knn", 0.7, seed=3, taxonomy=taxonomy)
    md = write_report([tmp_path / "hybrid", tmp_path / "knn"], tmp_path / "report")
    text = md.read_text()
    assert "| WAF1 |" in text and "| metric | hybrid | knn |" in text
    assert "Worst errors of knn" in text and "Review threshold trade-off" in text
    # node names come from the taxonomy named in run.json
    assert "Node A > Node A1 > Node A1a [A1a]" in text
    hybrid = load_metrics(tmp_path / "hybrid")
    low, high = hybrid["ci95"]["waf1"]
    assert f"| WAF1 | {hybrid['waf1']:.2f} [{low:.2f}, {high:.2f}] |" in text
    html = (tmp_path / "report" / "report.html").read_text()
    assert "<table>" in html and "calibration.png" in html and "Node A1a" in html
    for png in ("levels_f1.png", "calibration.png", "latency.png", "confusions_0.png", "confusions_1.png"):
        data = (tmp_path / "report" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert not list((tmp_path / "report").glob("*.tmp"))


def test_report_reads_latency_from_timings_and_orders_worst_errors(tmp_path: Path) -> None:
    make_run(tmp_path / "run", 0.6)
    run = load_run(tmp_path / "run")
    assert [p.latency_ms for p in run.predictions[:3]] == [10.0, 20.0, 30.0]
    md = write_report([tmp_path / "run"], tmp_path / "out").read_text()
    worst = md.split("## Worst errors of run")[1].split("##")[0]
    table = [line for line in worst.splitlines() if line.startswith("|")][2:]  # after header and rule
    confidences = [float(line.split("|")[-2]) for line in table]
    assert len(confidences) == 15 and confidences == sorted(confidences, reverse=True)
    wrong = [p for p in run.predictions if p.pred_tags[-1] != p.gold_tags[-1]]
    assert confidences[0] == round(max(p.confidence or 0 for p in wrong), 3)


def test_report_of_old_metrics_and_bad_runs(tmp_path: Path) -> None:
    make_run(tmp_path / "old", 0.8)
    metrics = json.loads((tmp_path / "old" / "metrics.json").read_text())
    for key in ("review_curve", "off_taxonomy_items", "no_prediction_rate"):
        del metrics[key]  # a metrics file written before these keys existed still reports
    (tmp_path / "old" / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "old" / "predictions.jsonl").unlink()
    md = write_report([tmp_path / "old"], tmp_path / "out").read_text()
    assert "| WAF1 |" in md and "Worst errors" not in md
    torn = make_run(tmp_path / "torn", 0.8)
    assert torn["n"] == 400
    with (tmp_path / "torn" / "predictions.jsonl").open("a") as fh:
        fh.write('{"id": "x", "gold')
    with pytest.raises(ValueError, match="line 401"):
        write_report([tmp_path / "torn"], tmp_path / "out2")


@pytest.mark.process
def test_report_cli(tmp_path: Path) -> None:
    make_run(tmp_path / "a", 0.8)
    runner = CliRunner()
    ok = runner.invoke(app, ["eval", "report", str(tmp_path / "a"), "--out", str(tmp_path / "rep")])
    assert ok.exit_code == 0 and (tmp_path / "rep" / "report.html").exists()
    (tmp_path / "not-a-run").mkdir()
    bad = runner.invoke(app, ["eval", "report", str(tmp_path / "a"), str(tmp_path / "not-a-run"), "--out", str(tmp_path / "r2")])
    assert bad.exit_code == 2 and "not found" in bad.output
    (tmp_path / "tax.json").write_text("[]")
    bad_tax = runner.invoke(app, ["eval", "report", str(tmp_path / "a"), "--out", str(tmp_path / "r3"),
                                  "--taxonomy", str(tmp_path / "tax.json")])
    assert bad_tax.exit_code == 2 and "cannot read the taxonomy" in bad_tax.output


def test_gate_is_asymmetric(tmp_path: Path) -> None:
    """The gate is asymmetric by design: swapping base and new flips the verdict."""
    base = make_run(tmp_path / "base", 0.8)
    worse = make_run(tmp_path / "worse", 0.5, seed=2)
    assert not compare_runs(base, worse, margin=1.0).ok
    assert compare_runs(worse, base, margin=1.0).ok
    assert compare_runs(copy.deepcopy(base), base, margin=0.0).ok
