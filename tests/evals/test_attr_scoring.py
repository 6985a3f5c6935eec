"""The attribute scorer: WDC-PAVE's outcomes by hand, exact agreement with the reference
scorer (``../shared/tools/score_wdc_pave.py``) on a synthetic fixture, bootstrap CIs and
paired differences, dataset reading (WDC-PAVE and Flipkart shapes)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from evals.attributes.dataset import load_attr_dataset
from evals.attributes.scoring import (
    OUTCOMES,
    attribute_paired_difference,
    compute_attribute_metrics,
    outcome,
    prf,
)
from evals.dataset import DatasetError
from tests.conftest import REPO

REFERENCE = REPO.parent / "shared" / "tools" / "score_wdc_pave.py"


def test_outcomes_by_hand() -> None:
    assert outcome([], None) == "NN"
    assert outcome([], "n/a") == "NN" and outcome([], ["", "N/A"]) == "NN"
    assert outcome(["Gold"], None) == "NV" and outcome(["Gold"], []) == "NV"
    assert outcome([], "Gold") == "VN"
    assert outcome(["Gold", "gold"], "  GOLD ") == "VC"
    assert outcome(["Hewlett-Packard"], "hewlett   packard") == "VW"
    assert outcome(["16 GB"], "16  gb") == "VC"
    # only the first predicted value counts
    assert outcome(["Red"], ["Blue", "Red"]) == "VW" and outcome(["Red"], ["n/a", "Red"]) == "VC"
    assert prf([0, 0, 0, 0, 0]) == (0.0, 0.0, 0.0)
    p, r, f = prf([1, 2, 1, 13, 1])  # NN NV VN VC VW
    assert p == pytest.approx(100 * 13 / 15) and r == pytest.approx(100 * 13 / 16)
    assert f == pytest.approx(100 * 26 / 31)


def _synthetic(n: int = 240, seed: int = 3) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Made-up offers in 3 categories with every kind of prediction (lists, n/a, empty,
    case and whitespace variants, unasked attributes, missing ones)."""
    rng = random.Random(seed)
    cats = {"Alpha": ["Brand", "Color", "Size"], "Beta": ["Brand", "Capacity"], "Gamma": ["Type", "Weight", "Brand"]}
    values = ["Red", "blue", "Hewlett-Packard", "16 GB", "2.5 kg", "Acme", "X-100", "n/a"]
    gold_rows, records = [], []
    for i in range(n):
        cat = rng.choice(sorted(cats))
        asked = cats[cat]
        gold: dict[str, list[str]] = {}
        written: dict[str, list[str]] = {}
        for a in asked:
            if rng.random() < 0.6:
                v = rng.choice(values[:-1])
                gold[a] = [v] + ([v.lower()] if rng.random() < 0.3 else [])
                written[a] = [v.upper() if rng.random() < 0.5 else v]
        pred: dict[str, Any] = {}
        as_written: dict[str, Any] = {}
        for a in [*asked, "Unasked"]:
            roll = rng.random()
            if roll < 0.25:
                continue
            if a in gold and roll < 0.6:
                v = rng.choice([gold[a][0], f"  {gold[a][0].upper()} ", gold[a][0].replace(" ", "   ")])
            else:
                v = rng.choice(values)
            shape = rng.random()
            pred[a] = [v, rng.choice(values)] if shape < 0.2 else (["n/a", v] if shape < 0.25 else ("" if shape < 0.3 else v))
            as_written[a] = rng.choice([v, v.lower(), *written.get(a, [])])
        gold_rows.append({"id": f"o{i}", "title": "t", "category": cat, "attributes_asked": asked,
                          "gold_attributes": gold, "gold_attributes_extracted": written})
        records.append({"id": f"o{i}", "category": cat, "category_given": True, "score_category": cat,
                        "attributes_asked": asked, "attributes": pred, "attributes_as_written": as_written,
                        "gold_attributes": gold, "gold_attributes_extracted": written, "latency_ms": 1.0})
    return gold_rows, records


def _reference(gold: Path, pred: Path, *extra: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(REFERENCE), str(gold), str(pred), *extra],
                         capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.mark.skipif(not REFERENCE.exists(), reason=f"reference scorer not available: {REFERENCE}")
def test_scorer_agrees_with_the_reference_exactly(tmp_path: Path) -> None:
    gold_rows, records = _synthetic()
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps(r) + "\n" for r in gold_rows))
    pred = tmp_path / "predictions.jsonl"  # our prediction lines, as the runner writes them
    pred.write_text("".join(json.dumps(r) + "\n" for r in records))
    ours = compute_attribute_metrics(records, n_boot=0)
    ref = _reference(gold, pred)
    assert ours["counts"] == {k: ref["counts"].get(k, 0) for k in OUTCOMES}
    assert all(ours["counts"][k] > 0 for k in OUTCOMES)  # the fixture exercises every outcome
    p, r, f = prf([ours["counts"][k] for k in OUTCOMES])
    assert (round(p, 2), round(r, 2), round(f, 2)) == (ref["precision"], ref["recall"], ref["f1"])
    assert {c: round(prf([v["counts"][k] for k in OUTCOMES])[2], 2) for c, v in ours["per_category"].items()} \
        == ref["per_category_f1"]
    # --extracted: the values as written against gold_attributes_extracted
    written = tmp_path / "written.jsonl"
    written.write_text("".join(json.dumps({"id": r["id"], "attributes": r["attributes_as_written"]}) + "\n"
                               for r in records))
    ref_ext = _reference(gold, written, "--extracted")
    assert ours["extracted"]["counts"] == {k: ref_ext["counts"].get(k, 0) for k in OUTCOMES}
    assert round(prf([ours["extracted"]["counts"][k] for k in OUTCOMES])[2], 2) == ref_ext["f1"]


def test_breakdowns_cis_and_paired_differences() -> None:
    _, records = _synthetic(n=300)
    m = compute_attribute_metrics(records, n_boot=300, seed=5)
    assert m["n"] == 300 and m["task"] == "attributes"
    lo, hi = m["ci95"]["f1"]
    assert lo < m["f1"] < hi and hi - lo < 15
    assert sum(c["n"] for c in m["per_category"].values()) == 300
    assert sum(a["pairs"] for a in m["per_attribute"].values()) == m["pairs"]
    assert set(m["per_attribute"]) >= {"Alpha / Brand", "Beta / Capacity", "Gamma / Weight"}
    for entry in m["per_attribute"].values():
        lo, hi = entry["f1_ci95"]
        assert lo <= entry["f1"] <= hi
    # same seed, same resamples: a second computation is identical
    assert compute_attribute_metrics(records, n_boot=300, seed=5) == m

    same = attribute_paired_difference(records, records, n_boot=200)
    assert same["f1"] == 0 and same["f1_ci95"] == [0.0, 0.0] and same["fixed"] == same["broken"] == 0
    # a run that answers every gold value right: a clear gain, its paired CI above 0
    perfect = [{**r, "attributes": {a: v[0] for a, v in r["gold_attributes"].items()}} for r in records]
    d = attribute_paired_difference(records, perfect, n_boot=200)
    assert compute_attribute_metrics(perfect, n_boot=0)["f1"] == 100.0
    assert d["f1"] == pytest.approx(100.0 - m["f1"], abs=1e-2) and d["f1_ci95"][0] > 0 and d["broken"] == 0
    with pytest.raises(ValueError):
        attribute_paired_difference(records, perfect[::-1])


def test_records_without_an_asked_list_are_scored_on_gold_and_predicted_attributes() -> None:
    rec = {"id": "f1", "score_category": "fk:Jewellery", "attributes_asked": None,
           "gold_attributes": {"Brand": ["Aadyaa"], "Color": ["Gold"]},
           "attributes": {"Brand": "aadyaa", "Plating": "Gold"}}
    m = compute_attribute_metrics([rec], n_boot=0)
    # Brand VC, Color NV, Plating VN (every other attribute of the category: NN, uncounted)
    assert m["counts"] == {"NN": 0, "NV": 1, "VN": 1, "VC": 1, "VW": 0}
    assert set(m["per_attribute"]) == {"Brand", "Color", "Plating"}


def test_dataset_reads_both_shapes(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    rows = [
        {"id": "w1", "title": "Waterford flute", "description": None, "category": "Jewelry",
         "attributes_asked": ["Brand", "Gender"], "gold_attributes": {"Brand": ["WATERFORD"]},
         "gold_attributes_extracted": {"Brand": ["Waterford"]}},
        {"id": "f1", "title": "Alloy bangle", "gold_tags": ["fk:J", "fk:J>B"],
         "gold_attributes": [{"attribute": "Brand", "value": "Aadyaa"}, {"attribute": "Plating", "value": "NA"},
                             {"attribute": "Pack of", "value": 2}]},
        {"id": "f2", "title": "no attributes", "gold_tags": ["fk:J"]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    items = load_attr_dataset(path)
    assert [it.id for it in items] == ["w1", "f1"]  # f2 has nothing to score
    assert items[0].gold_attributes == {"Brand": ["WATERFORD"]} and items[0].category == "Jewelry"
    assert items[1].gold_attributes == {"Brand": ["Aadyaa"], "Pack of": ["2"]}  # "NA" is no value
    assert items[1].category is None and items[1].attributes_asked is None
    assert [it.id for it in load_attr_dataset(path, keep_unscoreable=True)] == ["w1", "f1", "f2"]
    assert len(load_attr_dataset(path, limit=1)) == 1
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"id": "w2", "title": "x", "gold_attributes": 3}) + "\n")
    with pytest.raises(DatasetError, match="line 2"):
        load_attr_dataset(path)
