"""The blend weight of a fine-tuned model, fitted on catalog products it was not trained on.

The agent mixes the retrieval vote with the LLM's distribution over the candidates:
``(1 - w) * vote + w * llm``. How much the LLM deserves depends on the model: the untuned
SmolLM2 almost always picks the first option; a fine-tuned one is right more often, but may
still be right less often than the vote. So the weight is measured, not assumed: every
held-out product is scored once (the exact call the tagger makes), then each ``w`` of a grid
is tried on the stored distributions. The most accurate ``w`` wins; ties go to the smallest
(the vote alone is the conservative choice). The result lands in the model's manifest and the
tagger uses it unless the configuration sets ``llm_weight`` itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from agent.finetune.data import TrainItem
from agent.llm import ChatMessage, OptionScorer
from agent.tagger import ANSWER_PREFIX, ANSWER_SUFFIX

#: weights tried, 0 (the vote alone) to 1 (the LLM alone)
GRID = tuple(round(i / 20, 2) for i in range(21))
#: below this many held-out products the fit is noise: the manifest gets none
MIN_ITEMS = 30


def blended_choice(vote: Sequence[float], llm: Sequence[float], weight: float) -> int:
    """Index of the option the tagger would answer: the highest blended score, ties to the
    higher vote (the tagger's candidates are in vote order)."""
    scores = [(1 - weight) * v + weight * p for v, p in zip(vote, llm, strict=True)]
    return max(range(len(scores)), key=lambda i: (scores[i], vote[i]))


def fit_blend(
    scorer: OptionScorer,
    items: Sequence[TrainItem],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any] | None:
    """Score ``items`` with the model and fit the weight; None when fewer than
    :data:`MIN_ITEMS` items carry a vote."""
    usable = [it for it in items if it.vote and len(it.vote) == len(it.letters)]
    if len(usable) < MIN_ITEMS:
        return None
    rows: list[tuple[list[float], list[float], int]] = []
    for n, it in enumerate(usable, 1):
        scores = scorer.score_options(
            [ChatMessage("system", it.system), ChatMessage("user", it.user)], list(it.letters),
            assistant_prefix=ANSWER_PREFIX, continuations=[ANSWER_SUFFIX],
        )
        llm = [float(scores.probs.get(letter, 0.0)) for letter in it.letters]
        rows.append((list(it.vote), llm, it.letters.index(it.letter)))
        if progress is not None:
            progress(n, len(usable))
    accuracy = {
        w: sum(blended_choice(vote, llm, w) == gold for vote, llm, gold in rows) / len(rows) for w in GRID
    }
    best = max(GRID, key=lambda w: (accuracy[w], -w))
    return {
        "llm_weight": best,
        "n": len(rows),
        "accuracy": round(accuracy[best], 4),
        "vote_accuracy": round(accuracy[0.0], 4),
        "llm_accuracy": round(accuracy[1.0], 4),
        "accuracy_by_weight": {str(w): round(a, 4) for w, a in accuracy.items()},
    }
