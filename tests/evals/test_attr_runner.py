"""``--task attributes`` end to end on a synthetic 3-category dataset with the hashing
embedder (no model): the baselines' numbers by hand, the tagger's run completes and its
metrics are its predictions' counts, determinism, resumption, refusals, the CLI, the report
and the gate."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from evals.attributes.runner import run_attribute_eval
from evals.attributes.scoring import OUTCOMES, outcome, prf
from evals.dataset import DatasetError
from evals.runner import EvalConfig, RunMismatchError, run_eval
from retrieval import CachedEmbedder, EmbeddingCache, HashingEmbedder
from serve.cli import app
from serve.cli.eval_run_cmd import infer_taxonomy_format

from . import attr_toy


@pytest.fixture
def toy(tmp_path: Path) -> dict[str, Path]:
    return {**attr_toy.write(tmp_path / "data"), "cache": tmp_path / "cache"}


def _embedder(cache: Path) -> CachedEmbedder:
    return CachedEmbedder(HashingEmbedder(), EmbeddingCache(cache / "embeddings"))


def _no_llm() -> Any:
    raise AssertionError("no LLM must be loaded")


def _run(toy: dict[str, Path], out: Path, pipeline: str, **kw: Any) -> dict[str, Any]:
    cfg = EvalConfig(dataset=toy["dev"], taxonomy=toy["schema"], examples=toy["pool"], out=out, pipeline=pipeline,
                     taxonomy_format="wdc-pave", n_boot=100, seed=1, batch_size=4, task="attributes", **kw)
    summary = run_eval(cfg, embedder=lambda: _embedder(toy["cache"]), llm=_no_llm, cache_dir=toy["cache"])
    return summary.metrics


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _recount(records: list[dict[str, Any]]) -> dict[str, int]:
    """The outcomes counted here, independently of the scorer's bookkeeping."""
    counts: Counter[str] = Counter()
    for rec in records:
        for name in rec["attributes_asked"]:
            counts[outcome(rec["gold_attributes"].get(name, []), rec["attributes"].get(name))] += 1
    return {k: counts.get(k, 0) for k in OUTCOMES}


def test_dictionary_baseline_by_hand(toy: dict[str, Path], tmp_path: Path) -> None:
    m = _run(toy, tmp_path / "dict", "dict-baseline")
    preds = _lines(tmp_path / "dict" / "predictions.jsonl")
    assert {p["id"]: p["attributes"] for p in preds} == attr_toy.DICT_EXPECTED
    assert m["counts"] == attr_toy.DICT_COUNTS
    assert m["precision"] == pytest.approx(100 * 13 / 15, abs=1e-3)
    assert m["recall"] == pytest.approx(100 * 13 / 16, abs=1e-3)
    assert m["f1"] == pytest.approx(100 * 26 / 31, abs=1e-3)
    # the values as written are the matched text: the same outcomes against the extracted gold
    assert m["extracted"]["counts"] == attr_toy.DICT_COUNTS
    assert preds[2]["attributes_as_written"]["RAM"] == "16GB"
    # per category: Mugs VC 4 NV 2 → P 1, R 4/6; Shoes VC 4 VW 1 VN 1 → P 4/6, R 4/5
    assert m["per_category"]["Mugs"]["f1"] == pytest.approx(80.0, abs=1e-3)
    assert m["per_category"]["Laptops"]["f1"] == pytest.approx(100.0, abs=1e-3)
    assert m["per_category"]["Shoes"]["f1"] == pytest.approx(100 * 16 / 22, abs=1e-3)
    assert m["per_attribute"]["Shoes / Color"]["counts"] == {"NN": 0, "NV": 0, "VN": 0, "VC": 1, "VW": 1}
    assert m["off_schema_values"] == 0 and m["n"] == 6 and m["pairs"] == 18
    assert json.loads((tmp_path / "dict" / "run.json").read_text())["key"]["task"] == "attributes"
    assert json.loads((tmp_path / "dict" / "metrics.json").read_text())["f1"] == m["f1"]


def test_tagger_and_neighbour_vote_runs_complete_and_score_their_predictions(
    toy: dict[str, Path], tmp_path: Path
) -> None:
    for pipeline in ("hybrid", "neighbour-vote"):
        m = _run(toy, tmp_path / pipeline, pipeline)
        preds = _lines(tmp_path / pipeline / "predictions.jsonl")
        assert [p["id"] for p in preds] == ["d1", "d2", "d3", "d4", "d5", "d6"]
        counts = _recount(preds)
        assert m["counts"] == counts
        assert (m["precision"], m["recall"], m["f1"]) == tuple(round(x, 3) for x in prf([counts[k] for k in OUTCOMES]))
        assert m["off_schema_values"] == 0
        # only asked attributes, values of the schema, the category as given
        for p in preds:
            assert set(p["attributes"]) <= set(p["attributes_asked"]) and p["category_given"]
            assert p["category"] == p["score_category"]
        if pipeline == "hybrid":
            assert all(p["result"]["pipeline"] == "given-category" for p in preds)
            # easy, lexical data: the tagger reads most values right
            assert m["f1"] >= 60.0, m["counts"]


def test_deterministic_and_resumable(toy: dict[str, Path], tmp_path: Path) -> None:
    _run(toy, tmp_path / "a", "hybrid")
    _run(toy, tmp_path / "b", "hybrid")
    a = (tmp_path / "a" / "predictions.jsonl").read_bytes()
    assert a == (tmp_path / "b" / "predictions.jsonl").read_bytes()
    # a crash mid-write: 3 complete lines and half a 4th; the resumed run completes it
    crashed = tmp_path / "c"
    crashed.mkdir()
    for name in ("run.json", "timings.jsonl"):
        (crashed / name).write_bytes((tmp_path / "a" / name).read_bytes())
    lines = a.decode().splitlines()
    (crashed / "predictions.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:25])
    cfg = EvalConfig(dataset=toy["dev"], taxonomy=toy["schema"], examples=toy["pool"], out=crashed,
                     pipeline="hybrid", taxonomy_format="wdc-pave", n_boot=100, seed=1, batch_size=4,
                     task="attributes")
    summary = run_attribute_eval(cfg, embedder=lambda: _embedder(toy["cache"]), llm=_no_llm, cache_dir=toy["cache"])
    assert summary.resumed == 3
    assert (crashed / "predictions.jsonl").read_bytes() == a
    # another configuration in the same directory is refused, not mixed in
    with pytest.raises(RunMismatchError, match="pipeline"):
        _run(toy, tmp_path / "a", "dict-baseline")
    # a category run's directory is never resumed as an attribute run
    cat_dir = tmp_path / "cat"
    cat_dir.mkdir()
    run_json = json.loads((tmp_path / "a" / "run.json").read_text())
    run_json["key"].pop("task")
    (cat_dir / "run.json").write_text(json.dumps(run_json))
    with pytest.raises(RunMismatchError, match="task"):
        _run(toy, cat_dir, "hybrid")


def test_bad_inputs_are_refused(toy: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown pipeline"):
        _run(toy, tmp_path / "x", "tfidf-svm")
    bad = tmp_path / "bad.jsonl"
    row = attr_toy.dev()[0]
    bad.write_text(json.dumps({**row, "attributes_asked": ["Brand", "Flavour"]}) + "\n")
    cfg = EvalConfig(dataset=bad, taxonomy=toy["schema"], examples=toy["pool"], out=tmp_path / "y",
                     pipeline="dict-baseline", taxonomy_format="wdc-pave", task="attributes")
    with pytest.raises(DatasetError, match="Flavour"):
        run_eval(cfg, embedder=lambda: _embedder(toy["cache"]), llm=_no_llm, cache_dir=toy["cache"])


def test_cli_runs_the_attribute_task_and_reports_it(
    toy: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAGSMITH_EMBEDDER__BACKEND", "hashing")
    assert infer_taxonomy_format(toy["schema"]) == "wdc-pave"
    runner = CliRunner()
    base = ["eval", "run", "--task", "attributes", "--dataset", str(toy["dev"]), "--examples", str(toy["pool"]),
            "--taxonomy", str(toy["schema"]), "--bootstrap", "50"]
    runs = {}
    for pipeline in ("hybrid", "dict-baseline"):
        out = tmp_path / pipeline
        result = runner.invoke(app, [*base, "--out", str(out), "--pipeline", pipeline])
        assert result.exit_code == 0, result.output
        assert "attributes on 6 items: F1" in result.output
        runs[pipeline] = out
    assert json.loads((runs["hybrid"] / "run.json").read_text())["key"]["embedder"] == "hashing:default"
    bad = runner.invoke(app, [*base, "--out", str(tmp_path / "z"), "--task", "colours"])
    assert bad.exit_code != 0 and "--task" in bad.output

    report = tmp_path / "report"
    result = runner.invoke(app, ["eval", "report", str(runs["hybrid"]), str(runs["dict-baseline"]), "--out", str(report)])
    assert result.exit_code == 0, result.output
    md = (report / "report.md").read_text()
    assert "Paired differences" in md and "Per attribute" in md and "Shoes / Color" in md
    assert (report / "attributes_f1.png").stat().st_size > 0 and (report / "report.html").exists()

    gate = runner.invoke(app, ["eval", "compare", str(runs["hybrid"]), str(runs["hybrid"])])
    assert gate.exit_code == 0, gate.output
    assert "off_schema_values" in gate.output


def test_records_without_category_or_asked_list(tmp_path: Path) -> None:
    """Flipkart's shape: the tagger chooses the category and tags all its attributes; the
    dictionary baseline, which chooses none, is held to the taxonomy's attributes."""
    fk = {**attr_toy.write_flipkart_shaped(tmp_path / "fk"), "cache": tmp_path / "cache"}
    assert infer_taxonomy_format(fk["schema"]) == "flipkart"
    for pipeline in ("dict-baseline", "hybrid"):
        cfg = EvalConfig(dataset=fk["dev"], taxonomy=fk["schema"], examples=fk["pool"], out=tmp_path / pipeline,
                         pipeline=pipeline, taxonomy_format="flipkart", n_boot=50, task="attributes")
        m = run_eval(cfg, embedder=lambda: _embedder(fk["cache"]), llm=_no_llm, cache_dir=fk["cache"]).metrics
        preds = _lines(tmp_path / pipeline / "predictions.jsonl")
        assert [p["id"] for p in preds] == ["f1", "f2"]  # f3 has nothing to score
        assert m["off_schema_values"] == 0
        assert all(p["attributes_asked"] is None and not p["category_given"] for p in preds)
        # "NA" is no value; Warranty is not in the taxonomy: reported, not scored
        assert preds[1]["gold_attributes"] == {"Brand": ["Puma"]} and preds[1]["gold_unknown"] == []
        assert set(preds[0]["gold_attributes"]) == {"Brand", "Color"} and preds[0]["gold_unknown"] == ["Warranty"]
        assert set(m["per_category"]) == {"fk:Home", "fk:Shoes"}
        if pipeline == "dict-baseline":
            assert {p["id"]: p["attributes"] for p in preds} == {
                "f1": {"Brand": "Bolt", "Color": "Black"}, "f2": {"Brand": "Puma", "Color": "Red"}}
            # f1: VC VC; f2: Brand VC, Color VN (gold "NA")
            assert m["counts"] == {"NN": 0, "NV": 0, "VN": 1, "VC": 3, "VW": 0}
            assert m["category_accuracy"] is None  # the baseline chooses no category
        else:
            assert m["category_accuracy"] is not None
