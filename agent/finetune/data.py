"""Training prompts built exactly as the agent builds inference prompts, leave-one-out.

For every training example the real :class:`~retrieval.CandidateGenerator` retrieves its
neighbours from the whole example pool **minus the example itself and every exact
duplicate of its text** (near-duplicates stay: at inference a new product meets its
near-duplicates in the catalog too, and real catalogs are full of them). Without this a
training prompt would show the answer as its own first few-shot example and the model
would learn to copy it, a skill worth nothing on new products.

The lexical classifier is a second leak: trained on the whole pool it has memorised every
pool item, so its margins would be far more confident on training prompts than on new
products. It is therefore *cross-fitted*: the pool is split in ``folds`` groups (exact
duplicates always in the same group) and the margins of a group come from a classifier
trained on the other groups.

The candidates, their shuffled letter order, the few-shot examples and the answer format
come from :func:`agent.tagger.render_prompt` / :func:`agent.tagger.select_candidates`, the
functions the tagger itself calls. Items whose gold leaf is not among the candidates
cannot be answered by a letter and are left out (counted in the stats).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from agent.llm.manifest import PromptProfile
from agent.tagger import (
    ANSWER_PREFIX,
    ANSWER_SUFFIX,
    prompt_builder,
    render_prompt,
    select_candidates,
)
from retrieval import (
    CandidateConfig,
    CandidateGenerator,
    Embedder,
    Example,
    LexicalClassifier,
    TaxonomyIndex,
    build_index,
    text_of,
)
from retrieval.lexical import LEXICAL_MAX_CHARS
from taxonomy import Snapshot


@dataclass(frozen=True, slots=True)
class TrainItem:
    """One supervised example: chat messages in, the constrained answer out."""

    id: str
    system: str
    user: str
    letter: str  # the gold candidate's letter
    letters: tuple[str, ...]  # every option letter (validation scores among them)
    gold: str  # the gold leaf id
    vote_letter: str = ""  # the retrieval vote's top candidate (the baseline to beat)
    vote: tuple[float, ...] = ()  # the vote's share per letter of ``letters`` (fits the blend)

    @property
    def answer(self) -> str:
        """The assistant's text, exactly what constrained generation emits."""
        return f"{ANSWER_PREFIX}{self.letter}{ANSWER_SUFFIX}"


@dataclass(slots=True)
class DatasetStats:
    examples: int = 0  # the pool retrieved from
    selected: int = 0  # examples prompts were built for
    items: int = 0  # prompts kept
    gold_not_candidate: int = 0  # left out: the answer is not among the candidates
    untaggable: int = 0  # left out: no gold leaf active in the taxonomy, or no candidates
    excluded_duplicates: int = 0  # neighbours removed beyond the item itself
    lexical_folds: int = 0
    gold_position: dict[int, int] = field(default_factory=dict)  # rank of the gold candidate


def duplicate_key(example: Example) -> str:
    """What counts as an exact duplicate: the same text after the retrieval cleaning
    (whitespace, control characters) and case folding; ids and tags are ignored."""
    return text_of(example, LEXICAL_MAX_CHARS).casefold()


def exclusion_sets(examples: Sequence[Example]) -> list[frozenset[str]]:
    """Per example, the ids it must not retrieve: its own and those of its exact duplicates."""
    groups: dict[str, set[str]] = {}
    keys = [duplicate_key(ex) for ex in examples]
    for key, ex in zip(keys, examples, strict=True):
        groups.setdefault(key, set()).add(ex.id)
    frozen = {k: frozenset(v) for k, v in groups.items()}
    return [frozen[k] for k in keys]


def fold_of(example: Example, folds: int) -> int:
    """Deterministic fold by text, so exact duplicates land in the same fold."""
    digest = hashlib.sha256(duplicate_key(example).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % folds


def data_hash(examples: Sequence[Example]) -> str:
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps(ex.to_json(), sort_keys=True, ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def gold_leaf(example: Example, snap: Snapshot) -> str | None:
    """The example's first tag that is an active leaf of the snapshot (after remapping)."""
    for tag in example.tags:
        active = snap.resolve(tag)
        if active is not None and snap.is_leaf(active):
            return active
    return None


def build_items(
    examples: Sequence[Example],
    snap: Snapshot,
    embedder: Embedder,
    *,
    profile: PromptProfile,
    select: Sequence[int] | None = None,
    folds: int = 5,
    candidate_config: CandidateConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[TrainItem], DatasetStats]:
    """Leave-one-out training prompts for ``examples[i]`` for i in ``select`` (default all),
    retrieving from all of ``examples``. ``folds`` < 2 turns the lexical signal off
    (the ``knn`` candidates), otherwise it is cross-fitted over that many folds."""
    say = progress or (lambda _msg: None)
    cfg = candidate_config or CandidateConfig()
    chosen = list(range(len(examples))) if select is None else list(select)
    stats = DatasetStats(examples=len(examples), selected=len(chosen))
    say(f"embedding {len(examples)} examples")
    index = build_index(embedder, examples, max_chars=cfg.max_chars)
    taxonomy_index = TaxonomyIndex(snap, embedder)
    exclude = exclusion_sets(examples)
    queries = embedder.encode([text_of(examples[i], cfg.max_chars) for i in chosen])
    builder = prompt_builder(profile)

    # (positions in `chosen`, classifier) per fold; one fold of everything without lexical
    plan: list[tuple[list[int], LexicalClassifier | None]] = []
    if folds >= 2:
        stats.lexical_folds = folds
        fold_ids = [fold_of(ex, folds) for ex in examples]
        for f in range(folds):
            rows = [r for r, i in enumerate(chosen) if fold_ids[i] == f]
            if not rows:
                continue
            say(f"lexical classifier {f + 1}/{folds}")
            train = [ex for ex, fid in zip(examples, fold_ids, strict=True) if fid != f]
            plan.append((rows, LexicalClassifier.fit(train)))
    else:
        plan.append((list(range(len(chosen))), None))

    built: dict[int, TrainItem] = {}
    for rows, lexical in plan:
        generator = CandidateGenerator(
            embedder, snap, index, config=cfg, lexical=lexical, taxonomy_index=taxonomy_index
        )
        members = [examples[chosen[r]] for r in rows]
        margins = lexical.decision(members) if lexical is not None else None
        banned = [exclude[chosen[r]] for r in rows]
        stats.excluded_duplicates += sum(len(b) - 1 for b in banned)
        retrievals = generator.retrieve_vectors(
            np.ascontiguousarray(queries[rows]), margins=margins, exclude=banned
        )
        for r, ex, retrieval in zip(rows, members, retrievals, strict=True):
            gold = gold_leaf(ex, snap)
            candidates = select_candidates(retrieval, snap, profile.max_candidates)
            if gold is None or not candidates:
                stats.untaggable += 1
                continue
            ids = [c.id for c in candidates]
            if gold not in ids:
                stats.gold_not_candidate += 1
                continue
            rank = ids.index(gold)
            stats.gold_position[rank] = stats.gold_position.get(rank, 0) + 1
            prompt = render_prompt(
                builder, snap, ex, retrieval, ids,
                with_examples=True, max_examples=profile.max_examples,
            )
            letter_of = {o.tag_id: o.letter for o in prompt.options}
            total = sum(c.probability for c in candidates)
            share = {c.id: (c.probability / total if total > 0 else 1.0 / len(candidates)) for c in candidates}
            built[r] = TrainItem(
                id=ex.id, system=prompt.system, user=prompt.user, letter=letter_of[gold],
                letters=tuple(o.letter for o in prompt.options), gold=gold,
                vote_letter=letter_of[ids[0]],
                vote=tuple(round(share[o.tag_id], 6) for o in prompt.options),
            )
    items = [built[r] for r in sorted(built)]  # the order of `select`
    stats.items = len(items)
    return items, stats


def stats_json(stats: DatasetStats) -> dict[str, object]:
    out = asdict(stats)
    out["gold_position"] = {str(k): v for k, v in sorted(stats.gold_position.items())}
    return out
