"""The eval runner on real data: a smoke eval of the default pipeline on 50 MWPD dev items
(fixed seed), determinism, resumption after a crash, the baseline, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evals.dataset import DatasetError, load_dataset
from evals.runner import EvalConfig, RunMismatchError, run_eval
from retrieval import CachedEmbedder, EmbeddingCache, SentenceTransformerEmbedder
from serve.settings import Settings
from tests.conftest import REPO, shared_file

TAGSMITH = str(Path(sys.executable).parent / "tagsmith")
POOL_SUBSET = 2500  # enough neighbours per class for a meaningful smoke number, cheap to embed
SMOKE_N = 50
LLM_WEIGHT_POOL = 300


@pytest.fixture(scope="module")
def mwpd(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    taxonomy = shared_file("mwpd/taxonomy.json")
    dev = shared_file("mwpd/dev.jsonl")
    pool_lines = shared_file("mwpd/pool.jsonl").read_text(encoding="utf-8").splitlines()[:POOL_SUBSET]
    work = tmp_path_factory.mktemp("mwpd")
    pool = work / "pool.jsonl"  # a temporary subset: the data never enters the repository
    pool.write_text("\n".join(pool_lines) + "\n", encoding="utf-8")
    return {"taxonomy": taxonomy, "dev": dev, "pool": pool, "cache": work / "cache"}


@pytest.fixture(scope="module")
def embedder(mwpd: dict[str, Path]) -> CachedEmbedder:
    return CachedEmbedder(SentenceTransformerEmbedder(), EmbeddingCache(mwpd["cache"] / "embeddings"))


def _run(mwpd: dict[str, Path], embedder: CachedEmbedder, out: Path, pipeline: str = "hybrid", limit: int = SMOKE_N) -> dict[str, object]:
    cfg = EvalConfig(dataset=mwpd["dev"], taxonomy=mwpd["taxonomy"], examples=mwpd["pool"], out=out,
                     pipeline=pipeline, limit=limit, seed=7, n_boot=200)

    def no_llm() -> object:
        raise AssertionError(f"pipeline {pipeline} must not load an LLM")

    summary = run_eval(cfg, embedder=lambda: embedder, llm=no_llm, cache_dir=mwpd["cache"])  # type: ignore[arg-type]
    return summary.metrics


def test_smoke_eval_of_the_default_pipeline(mwpd: dict[str, Path], embedder: CachedEmbedder, tmp_path: Path) -> None:
    assert Settings().tagging.pipeline == "hybrid"  # the smoke eval must follow the service default
    metrics = _run(mwpd, embedder, tmp_path / "a")
    print(f"\nsmoke eval (hybrid, {SMOKE_N} MWPD dev items, {POOL_SUBSET} pool examples): "
          f"WAF1 {metrics['waf1']:.2f}, accuracy {metrics['accuracy']:.2f}")
    assert metrics["n"] == SMOKE_N
    assert metrics["off_taxonomy_rate"] == 0
    # measured 80+ on this slice; well below that means the pipeline is broken, not noisy
    assert metrics["waf1"] >= 65.0
    assert metrics["items_per_second"] is not None and metrics["items_per_second"] > 0
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["waf1"] == metrics["waf1"]
    lines = (tmp_path / "a" / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == [it.id for it in load_dataset(mwpd["dev"], limit=SMOKE_N)]

    # same command, same seed → byte-identical predictions (the index comes from the cache)
    _run(mwpd, embedder, tmp_path / "b")
    assert (tmp_path / "a" / "predictions.jsonl").read_bytes() == (tmp_path / "b" / "predictions.jsonl").read_bytes()

    # a crash mid-write: keep 20 lines and half of the 21st; the resumed run completes it
    crashed = tmp_path / "c"
    crashed.mkdir()
    for name in ("run.json", "timings.jsonl"):
        (crashed / name).write_bytes((tmp_path / "a" / name).read_bytes())
    (crashed / "predictions.jsonl").write_text("\n".join(lines[:20]) + "\n" + lines[20][:37], encoding="utf-8")
    _run(mwpd, embedder, crashed)
    assert (crashed / "predictions.jsonl").read_bytes() == (tmp_path / "a" / "predictions.jsonl").read_bytes()

    # another configuration in the same directory is refused, not mixed in
    with pytest.raises(RunMismatchError):
        _run(mwpd, embedder, tmp_path / "a", pipeline="knn")


def test_tfidf_svm_baseline_runs_through_the_same_runner(mwpd: dict[str, Path], tmp_path: Path) -> None:
    def no_embedder() -> CachedEmbedder:
        raise AssertionError("the baseline must not load the embedder")

    def no_llm() -> object:
        raise AssertionError("the baseline must not load an LLM")

    cfg = EvalConfig(dataset=mwpd["dev"], taxonomy=mwpd["taxonomy"], examples=mwpd["pool"], out=tmp_path,
                     pipeline="tfidf-svm", limit=SMOKE_N, seed=7, n_boot=100)
    metrics = run_eval(cfg, embedder=no_embedder, llm=no_llm, cache_dir=mwpd["cache"]).metrics  # type: ignore[arg-type]
    assert metrics["n"] == SMOKE_N and metrics["off_taxonomy_rate"] == 0
    assert metrics["waf1"] >= 55.0


def test_bad_dataset_lines_are_reported_with_line_numbers(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"id": "a", "title": "ok", "gold_tags": ["x"]}\n'
        "not json\n"
        '{"id": "b", "title": "no gold"}\n'
        '{"id": "a", "title": "dup", "gold_tags": ["x"]}\n',
        encoding="utf-8",
    )
    with pytest.raises(DatasetError) as err:
        load_dataset(bad)
    text = str(err.value)
    assert "3 bad line(s)" in text
    assert "line 2: invalid JSON" in text and "line 3: gold_tags" in text and "line 4: duplicate id 'a'" in text


@pytest.mark.process
def test_cli_eval_run(mwpd: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [TAGSMITH, "eval", "run", "--dataset", str(mwpd["dev"]),
         "--taxonomy", str(mwpd["taxonomy"]), "--examples", str(mwpd["pool"]), "--pipeline", "tfidf-svm",
         "--limit", "10", "--bootstrap", "50", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "tfidf-svm on 10 items" in proc.stdout
    assert json.loads((out / "metrics.json").read_text())["n"] == 10
    bad = subprocess.run(
        [TAGSMITH, "eval", "run", "--dataset", str(mwpd["dev"]),
         "--taxonomy", str(mwpd["taxonomy"]), "--pipeline", "nope", "--out", str(tmp_path / "x")],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert bad.returncode == 1 and "unknown pipeline 'nope'" in bad.stderr


@pytest.mark.process
def test_cli_eval_run_llm_weight(mwpd: dict[str, Path], tmp_path: Path) -> None:
    """--llm-weight reaches the tagger and the run key; it is refused where no LLM runs; the
    service's TAGSMITH_TAGGING__LLM_WEIGHT applies to evals of LLM pipelines too."""
    # what is checked is the plumbing of the weight, not accuracy: a 300-example pool instead of
    # the module's 2,500 (the first run embeds, trains and calibrates on it; ~8x less work)
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(mwpd["pool"].read_text(encoding="utf-8").splitlines(keepends=True)[:LLM_WEIGHT_POOL]),
                    encoding="utf-8")
    base = [TAGSMITH, "eval", "run", "--dataset", str(mwpd["dev"]), "--taxonomy", str(mwpd["taxonomy"]),
            "--examples", str(pool), "--limit", "2", "--bootstrap", "10"]
    env = {**os.environ, "TAGSMITH_DATA_DIR": str(tmp_path / "data")}
    out = tmp_path / "rag"
    proc = subprocess.run([*base, "--pipeline", "rag", "--llm-weight", "0.4", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["key"]["tagger"] == {"llm_weight": 0.4}
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 2

    knn = subprocess.run([*base, "--pipeline", "knn", "--llm-weight", "0.4", "--out", str(tmp_path / "knn")],
                         capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert knn.returncode == 1 and "--llm-weight applies to the LLM pipelines" in knn.stderr
    too_big = subprocess.run([*base, "--pipeline", "rag", "--llm-weight", "1.5", "--out", str(tmp_path / "x")],
                             capture_output=True, text=True, timeout=300, cwd=REPO, env={**env, "COLUMNS": "200"})
    assert too_big.returncode == 2 and "less than or equal to 1" in too_big.stderr  # typer's range check

    # the service's setting: recorded for an LLM pipeline (and a different key refuses to resume)
    env_weight = {**env, "TAGSMITH_TAGGING__LLM_WEIGHT": "0.25"}
    again = subprocess.run([*base, "--pipeline", "rag", "--out", str(out)],
                           capture_output=True, text=True, timeout=600, cwd=REPO, env=env_weight)
    assert again.returncode == 1 and "another configuration (differs in: tagger)" in " ".join(again.stderr.split())
    fresh = tmp_path / "rag-env"
    proc = subprocess.run([*base, "--pipeline", "rag", "--out", str(fresh)],
                          capture_output=True, text=True, timeout=600, cwd=REPO, env=env_weight)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((fresh / "run.json").read_text())["key"]["tagger"] == {"llm_weight": 0.25}


@pytest.mark.process
@pytest.mark.parametrize("pipeline", [None, "knn", "tfidf-svm"])
def test_cli_eval_run_model_needs_an_llm_pipeline(tmp_path: Path, pipeline: str | None) -> None:
    """--model with a pipeline that runs no LLM (the default hybrid included) would silently
    evaluate without the model: refused in one line, before anything is loaded or written,
    like --llm-weight."""
    from tests.evals.toy import write_toy_taxonomy

    taxonomy = write_toy_taxonomy(tmp_path / "taxonomy.json")
    dataset = tmp_path / "dev.jsonl"
    dataset.write_text(json.dumps({"id": "1", "title": "x", "gold_tags": ["A", "A1", "A1a"]}) + "\n")
    out = tmp_path / "run"
    cmd = [TAGSMITH, "eval", "run", "--dataset", str(dataset), "--taxonomy", str(taxonomy),
           "--out", str(out), "--model", str(tmp_path)]
    proc = subprocess.run([*cmd, *(["--pipeline", pipeline] if pipeline else [])], capture_output=True,
                          text=True, timeout=120, cwd=REPO, env={**os.environ, "COLUMNS": "300"})
    assert proc.returncode == 1, proc.stderr
    message = proc.stderr.strip()
    assert message.startswith("error: --model applies to the LLM pipelines (cascade, rag, zero-shot), "
                              f"not {pipeline or 'hybrid'}"), message
    assert len(message.splitlines()) == 1 and not out.exists()

