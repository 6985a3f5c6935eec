"""The learning-curve / active-learning machinery on a tiny synthetic pool (hashing
embedder, toy taxonomy; no MWPD, no model)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.review_priority import ReviewSignal, order_for_review
from evals.dataset import DatasetItem
from evals.few_labels import (
    Workbench,
    choose,
    labels_to_reach,
    per_category,
    signals,
    simulate,
)
from retrieval import HashingEmbedder, LexicalClassifier
from tests.evals.toy import LEAVES, toy

WORDS = {"A1a": ["kettle", "teapot"], "A1b": ["skillet", "frying"], "A2a": ["sneaker", "running"],
         "B1a": ["pencil", "eraser"]}


def _items(prefix: str, n: int, seed: int) -> list[DatasetItem]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        path = LEAVES[i % len(LEAVES)]
        own = WORDS[path[-1]]
        noise = rng.choice([w for ws in WORDS.values() for w in ws])  # a word of any class
        title = f"{rng.choice(own)} {own[i % 2]} {noise} model {rng.randint(1, 99)}"
        out.append(DatasetItem(id=f"{prefix}{i}", title=title, gold_tags=path))
    return out


@pytest.fixture(scope="module")
def bench() -> Workbench:
    return Workbench.build(toy(), _items("p", 48, 1), _items("e", 16, 2), HashingEmbedder(dim=256))


def test_per_category_is_seeded_and_bounded() -> None:
    leaves = ["a"] * 5 + ["b"] * 2 + ["c"]
    one = per_category(leaves, 1, seed=3)
    assert sorted(leaves[i] for i in one) == ["a", "b", "c"]
    assert per_category(leaves, 1, seed=3) == one  # the same seed, the same subset
    assert sorted(leaves[i] for i in per_category(leaves, 3, seed=0)) == ["a"] * 3 + ["b"] * 2 + ["c"]
    assert per_category(leaves, None, seed=0) == list(range(len(leaves)))


def test_lexical_counts_fit_the_same_classifier_as_lexical_fit(bench: Workbench) -> None:
    rows = list(range(30))
    fast = bench.lexical.fit(rows, [bench.pool[i].tags[-1] for i in rows])
    slow = LexicalClassifier.fit([bench.pool[i] for i in rows])
    assert fast is not None and fast.classifier is not None and slow is not None
    assert fast.classifier.classes == slow.classes
    queries = [bench.pool_products[i] for i in range(30, 40)] + bench.eval_products()[:5]
    expected = slow.decision(queries)
    np.testing.assert_allclose(fast.classifier.decision(queries), expected, atol=1e-5)
    np.testing.assert_allclose(fast.margins([bench.row_of(q) for q in queries]), expected, atol=1e-5)
    assert bench.lexical.fit([0, 1], ["x", "y"]) is None  # nothing with 3 examples: no classifier


def test_queue_picks_follow_the_review_ordering(bench: Workbench) -> None:
    labelled = per_category(bench.pool_leaves, 1, seed=0)
    rest = [i for i in range(len(bench.pool)) if i not in set(labelled)]
    results = bench.tagger(labelled).tag_many([bench.pool_products[i] for i in rest])
    support = {leaf: 1 for leaf in WORDS}
    expected = sorted(rest[j] for j in order_for_review(signals(results), support, limit=5))
    picks = choose("queue", bench, labelled, rest, results, 5, random.Random(0))
    assert picks == expected
    assert not set(picks) & set(labelled)
    rand = choose("random", bench, labelled, rest, None, 5, random.Random(0))
    assert len(set(rand)) == 5 and not set(rand) & set(labelled)
    with pytest.raises(ValueError):
        choose("queue", bench, labelled, rest, None, 5, random.Random(0))


def test_signal_of_a_result_names_top_and_runner_up(bench: Workbench) -> None:
    result = bench.tagger(list(range(12))).tag(bench.pool_products[20])
    signal = ReviewSignal.of(result)
    assert signal.top == result.tags[0].id and signal.confidence == result.tags[0].confidence
    assert signal.runner_up is not None and signal.runner_up != signal.top
    assert signal.runner_up_confidence <= signal.confidence


def test_queue_scans_a_sample_when_asked(bench: Workbench) -> None:
    rounds = simulate(bench, "queue", batch=5, max_labels=14, seed=0, n_boot=0, scan=8)
    assert [r.labels for r in rounds] == [4, 9, 14]


@pytest.mark.parametrize("strategy", ["queue", "random"])
def test_simulation_rounds_grow_to_the_budget(bench: Workbench, strategy: str) -> None:
    rounds = simulate(bench, strategy, batch=10, max_labels=25, seed=0, n_boot=0)
    assert [r.labels for r in rounds] == [4, 14, 24, 25]
    for r in rounds:
        assert r.metrics["n"] == len(bench.eval_items) and 0.0 <= r.metrics["waf1"] <= 100.0
    # every label is the pool's gold: the whole pool labelled is the full-pool tagger
    whole = simulate(bench, strategy, batch=50, max_labels=len(bench.pool), seed=0, n_boot=0)
    full = bench.score(bench.tagger(list(range(len(bench.pool)))).tag_many(bench.eval_products()), n_boot=0)
    assert whole[-1].labels == len(bench.pool) and whole[-1].metrics["waf1"] == full["waf1"]
    assert full["waf1"] > rounds[0].metrics["waf1"]  # labels help on this toy set


def test_labels_to_reach() -> None:
    curve = [{"labels": 4, "waf1": 50.0}, {"labels": 14, "waf1": 81.0}, {"labels": 24, "waf1": 79.0}]
    assert labels_to_reach(curve, 80.0) == 14
    assert labels_to_reach(curve, 90.0) is None


def test_verdict_and_plot_of_curves(tmp_path: Path) -> None:
    from evals.benchmarks.active_learning import plot, verdict

    def curve(values: list[float]) -> list[dict[str, Any]]:
        return [{"labels": 100 + 50 * i, "waf1": v, "waf1_ci95": [v - 2, v + 2]} for i, v in enumerate(values)]

    results = {"full_pool": {"labels": 1000, "waf1": 88.0}, "seeds": [0], "batch": 50, "dataset": "toy",
               "curves": {"queue/0": curve([40, 70, 81, 87.5]), "random/0": curve([40, 60, 72, 80])}}
    v = verdict(results)
    assert v["queue_beats_random_every_round/0"] is True
    assert v["queue_minus_random/0"] == [0.0, 10.0, 9.0, 7.5]
    assert v["curves"]["queue/0"] == {"labels_to_80": 200, "labels_to_full_minus_1": 250, "final": 87.5}
    assert v["curves"]["random/0"]["labels_to_full_minus_1"] is None
    results["curves"]["random/0"][2]["waf1"] = 82.0
    assert verdict(results)["queue_beats_random_every_round/0"] is False
    assert (tmp_path / plot(results, tmp_path / "al.png")).stat().st_size > 1000
