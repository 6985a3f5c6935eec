"""Training prompts for the attribute step, exactly as the agent sends them, leave-one-out.

For every example that carries attribute values, the prompt is the request the attribute
extractor makes of the LLM for that product: the extractor (with the LLM step on) is run
on the example with a backend that records the request and answers nothing
(:func:`sent_request`), so the prompt, its options, hints and cut text are the agent's by
construction, whatever the extractor does to build them. The example's gold category is
given (as when the category step got it right) and all its active attributes are asked
(the ``"on"`` selection). The answer is the JSON object the request's schema admits, in the
compact form constrained decoding writes:

- a closed attribute: the gold values' option names (``"none"`` / ``[]`` when the example
  has no value, or when its value is not among the options shown: then no option is right);
- an open attribute: the gold value **as written** (the model copies spans; normalization is
  code's job), taken from the product text the prompt shows; ``"none"`` when the example has
  no value, or when no written form of it occurs in what the prompt shows (cut text), or
  fits the schema's bounds (length; no quote or backslash: a bounded string cannot hold one,
  so ``18"`` is answered ``18``, which grounds and normalizes the same).

Leave-one-out: the extractor is **cross-fitted**. The examples are split in ``folds`` groups
by text (exact duplicates together) and an example's request comes from an extractor fitted
on the other groups only, so neither its knowledge (values seen written, how often a writing
is the value, shapes, value classifiers, the ranker) nor its own neighbour index (the
labelled examples whose values vote) contains the example or its exact duplicates. The
retrieval neighbours the tagger would hand over are computed leave-one-out as well
(:func:`loo_neighbours`: all examples minus the example and its exact duplicates), though
the extractor currently votes with its own index. Without cross-fitting the example's own
values would vote for themselves and be "seen before", so ``folds`` must be at least 2.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from agent.attributes.extractor import AttributeExtractor, ExtractorConfig, selected_attributes
from agent.attributes.knowledge import category_of, example_text
from agent.attributes.llm_step import (
    MAX_PROMPT_CHARS,
    AttributeQuestion,
    GroundingText,
    render_attribute_prompt,
)
from agent.attributes.text import ProductText
from agent.contract import AttributeSelection
from agent.finetune.data import exclusion_sets, fold_of
from agent.llm.base import ChatMessage, Generation, LLMUnavailableError, ModelInfo
from agent.llm.fake import product_block
from agent.llm.manifest import AttributePromptProfile
from prompts import NONE_ANSWER, sanitize_untrusted
from retrieval import CandidateConfig, CandidateGenerator, Embedder, Example, build_index, text_of
from taxonomy import Snapshot
from taxonomy.folding import fold
from taxonomy.model import Attribute


def extractor_config(profile: AttributePromptProfile, base: ExtractorConfig | None = None) -> ExtractorConfig:
    """The extractor settings that render the profile's prompt."""
    return replace(
        base or ExtractorConfig(), neighbours=profile.neighbours, llm_max_options=profile.max_options,
        llm_description_chars=profile.description_chars,
    )


def agent_profile(config: ExtractorConfig | None = None) -> AttributePromptProfile:
    """The profile of the prompt the agent sends with ``config`` (default: the extractor's
    defaults) and :func:`~agent.attributes.llm_step.ask_attributes`' size limits."""
    cfg = config or ExtractorConfig()
    return AttributePromptProfile(
        max_options=cfg.llm_max_options, description_chars=cfg.llm_description_chars,
        neighbours=cfg.neighbours, max_prompt_chars=MAX_PROMPT_CHARS,
    )


@dataclass(frozen=True, slots=True)
class AttributeTrainItem:
    """One supervised example of the attribute step: chat messages in, the JSON answer out."""

    id: str
    system: str
    user: str
    answer: str  # the assistant's text: the compact JSON object the schema admits
    category: str
    attributes: tuple[str, ...]  # attribute ids, in the answer's key order
    filled: int = 0  # attributes whose answer is a value (not "none" / [])

    @property
    def task(self) -> str:
        return "attributes"


@dataclass(slots=True)
class AttributeDatasetStats:
    examples: int = 0  # the pool retrieved from
    selected: int = 0  # examples considered
    items: int = 0  # prompts kept
    unlabelled: int = 0  # left out: no attribute values (unknown, not "none")
    no_category: int = 0  # left out: no tag active in the taxonomy
    no_attributes: int = 0  # left out: the category has no active attribute (or none askable)
    asked: int = 0  # (example, attribute) pairs in the prompts
    filled: int = 0  # of which the answer is a value
    gold_none: int = 0  # of which the example has no value: "none"
    closed_not_shown: int = 0  # "none": the gold value is not among the options shown
    open_not_shown: int = 0  # "none": no written form occurs in the text the prompt shows
    open_cut: int = 0  # answered with the part before a quote/backslash (``18"`` → ``18``)
    open_too_long: int = 0  # "none": longer than the schema's bound
    folds: int = 0
    excluded_duplicates: int = 0  # neighbours removed beyond the item itself
    by_category: dict[str, int] = field(default_factory=dict)


# --- the prompt the agent sends ----------------------------------------------------------


class PromptDriftError(RuntimeError):
    """The attribute step asks differently from what training assumes (other attributes or
    keys): :mod:`agent.finetune.attributes` must follow the extractor."""


@dataclass(frozen=True)
class SentRequest:
    """One request of the attribute step, as the backend received it."""

    messages: tuple[ChatMessage, ...]
    schema: Mapping[str, Any]
    max_tokens: int

    @property
    def system(self) -> str:
        return next(m.content for m in self.messages if m.role == "system")

    @property
    def user(self) -> str:
        return next(m.content for m in self.messages if m.role == "user")


class _Recorder:
    """A backend that records the first request and answers none (the step then ends as
    with a backend that is down: nothing is re-asked)."""

    def __init__(self) -> None:
        self.sent: SentRequest | None = None
        self._info = ModelInfo(name="recorder", model="recorder")

    @property
    def info(self) -> ModelInfo:
        return self._info

    def generate(
        self, messages: Sequence[ChatMessage], schema: Mapping[str, Any], *, max_tokens: int = 64,
        temperature: float = 0.0, seed: int = 0, top_logprobs: int = 0,
    ) -> Generation:
        if self.sent is None:
            self.sent = SentRequest(tuple(messages), dict(schema), max_tokens)
        raise LLMUnavailableError("recording the request only")

    def close(self) -> None:
        pass


def sent_request(
    extractor: AttributeExtractor,
    snapshot: Snapshot,
    text: ProductText,
    category: str,
    neighbours: Sequence[tuple[Example, float]] = (),
    selection: AttributeSelection = "on",
) -> SentRequest | None:
    """The request the attribute step makes of the LLM for this product: the extractor is
    run with a backend that records it (so the prompt is the agent's by construction, whatever
    the extractor does to build it); None when nothing is asked."""
    recorder = _Recorder()
    extractor.extract_with_llm(snapshot, text, category, neighbours, selection, recorder)
    return recorder.sent


def shown_text(text: ProductText, config: ExtractorConfig) -> str:
    """The product text the attribute step shows and grounds answers in: the title, a
    newline and the head of the description (:meth:`AttributeExtractor._ask`)."""
    title = text.field("title")
    description = text.field("description")
    head = title.text if title is not None else ""
    body = description.text[: config.llm_description_chars] if description is not None else ""
    return f"{head}\n{body}" if body else head


def answer_keys(snapshot: Snapshot, category: str, selection: AttributeSelection = "on") -> list[tuple[str, Attribute]]:
    """The answer's keys, in order, with their attributes: the attributes the step asks
    (active, askable) keyed as :class:`~prompts.AttributePromptBuilder` names them."""
    attrs = selected_attributes(snapshot, category, selection)
    if not attrs:
        return []
    request = render_attribute_prompt("-", "-", [AttributeQuestion(a) for a in attrs])
    by_id = {a.id: a for a in attrs}
    return [(a.key, by_id[a.attribute_id]) for a in request.prompt.attributes] if request.prompt else []


def option_ids(attr: Attribute) -> dict[str, str]:
    """Folded option name → value id, for every active value, named as the prompt names
    options (sanitised, a value called "none" renamed; the first of equal names wins)."""
    out: dict[str, str] = {}
    for v in attr.active_values():
        name = sanitize_untrusted(v.name, OPTION_NAME_CHARS)
        if name.casefold() == NONE_ANSWER:
            name = f"{name} (value)"
        if name:
            out.setdefault(name.casefold(), v.id)
    return out


#: the attribute prompt's cap on option names (AttributePromptBuilder's max_name_chars)
OPTION_NAME_CHARS = 60


# --- the answer to train on ----------------------------------------------------------------


def _bounded(value: str) -> str:
    """The part of ``value`` a bounded JSON string can hold: up to the first quote,
    backslash or control character (the grammar admits none), stripped."""
    for i, c in enumerate(value):
        if c in '"\\' or unicodedata.category(c) == "Cc":
            return value[:i].strip()
    return value.strip()


def _written(block: GroundingText, shown: GroundingText, mention: str) -> str | None:
    """``mention`` as it stands in the product block of the prompt (what the model copies),
    whitespace collapsed; None when it is not there or would not ground in the shown text."""
    where, _ = block.ground(mention)
    if where is None:
        return None
    span = block.text[where[0]:where[1]]
    found = " ".join("".join(c for c in span if unicodedata.category(c) != "Cf").split())
    if not any(c.isalnum() for c in found) or shown.ground(found)[0] is None:
        return None
    return found


def _open_answer(
    mentions: Sequence[str], limit: int, most: int, block: GroundingText, shown: GroundingText,
    stats: AttributeDatasetStats,
) -> list[str]:
    picked: list[str] = []
    too_long = cut = False
    for mention in mentions:
        bounded = _bounded(mention)
        if not bounded:
            continue
        found = _written(block, shown, bounded)
        if found is None:
            continue
        if len(found) > limit:
            too_long = True
            continue
        if fold(found) in (fold(p) for p in picked):
            continue
        cut = cut or bounded != mention.strip()
        picked.append(found)
        if len(picked) >= most:
            break
    if picked:
        stats.open_cut += cut
    elif too_long:
        stats.open_too_long += 1
    else:
        stats.open_not_shown += 1
    return picked


def attribute_answer(
    sent: SentRequest,
    keys: Sequence[tuple[str, Attribute]],
    example: Example,
    extractor: AttributeExtractor,
    shown: str,
    stats: AttributeDatasetStats | None = None,
) -> tuple[str, int]:
    """The answer ``sent``'s schema admits for the example's gold values, as compact JSON
    (the form constrained decoding writes), and how many attributes it fills. ``keys``: the
    answer's keys with their attributes (:func:`answer_keys`); PromptDriftError when the
    schema has others."""
    st = stats if stats is not None else AttributeDatasetStats()
    props = dict(sent.schema.get("properties") or {})
    if list(props) != [k for k, _ in keys]:
        raise PromptDriftError(
            f"the attribute step asks {list(props)}, training expects {[k for k, _ in keys]}"
        )
    names = [attr.name for _, attr in keys]
    block = GroundingText(product_block(sent.messages), names)
    shown_g = GroundingText(shown, names)
    out: dict[str, str | list[str]] = {}
    filled = 0
    for key, attr in keys:
        prop = props[key]
        multi = prop.get("type") == "array"
        item = prop["items"] if multi else prop
        most = int(prop.get("maxItems", 1)) if multi else 1
        st.asked += 1
        gold = [v for v in example.attribute_values.get(attr.id, ()) if v.strip()]
        picked: list[str] = []
        if not gold:
            st.gold_none += 1
        elif "enum" in item:
            ids = option_ids(attr)
            shown_ids = {ids.get(str(n).casefold()): str(n) for n in item["enum"] if str(n) != NONE_ANSWER}
            wanted = [extractor.knowledge.value_key(attr, v) for v in gold]
            picked = list(dict.fromkeys(shown_ids[k] for k in wanted if k in shown_ids))[:most]
            if not picked:
                st.closed_not_shown += 1
        else:
            mentions = list(example.attribute_mentions.get(attr.id, ())) or gold
            picked = _open_answer(mentions, int(item.get("maxLength", 60)), most, block, shown_g, st)
        filled += bool(picked)
        out[key] = picked if multi else (picked[0] if picked else NONE_ANSWER)
    st.filled += filled
    return compact_json(out), filled


def compact_json(answer: Mapping[str, str | list[str]]) -> str:
    """The answer exactly as constrained decoding writes it (:func:`agent.llm.grammar.compact_gbnf`,
    :mod:`agent.llm.json_decode`): no whitespace, keys JSON-escaped to ASCII, values as written."""
    return "{" + ",".join(
        json.dumps(key) + ":" + json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        for key, value in answer.items()
    ) + "}"


# --- the dataset ---------------------------------------------------------------------------


def labelled(examples: Sequence[Example], snap: Snapshot) -> list[int]:
    """Positions of the examples that carry attribute values and a category of the taxonomy."""
    return [
        i for i, ex in enumerate(examples)
        if ex.attribute_values and category_of(snap, ex.tags) is not None
    ]


def loo_neighbours(
    examples: Sequence[Example],
    positions: Sequence[int],
    snap: Snapshot,
    embedder: Embedder,
    candidate_config: CandidateConfig | None = None,
) -> dict[int, list[tuple[Example, float]]]:
    """The retrieval neighbours (as the tagger hands them to the extractor) of
    ``examples[i]`` for i in ``positions``, from all of ``examples`` minus the example itself
    and its exact duplicates."""
    if not positions:
        return {}
    cfg = candidate_config or CandidateConfig()
    generator = CandidateGenerator(
        embedder, snap, build_index(embedder, examples, max_chars=cfg.max_chars), config=cfg
    )
    exclude = exclusion_sets(examples)
    queries = embedder.encode([text_of(examples[i], cfg.max_chars) for i in positions])
    retrievals = generator.retrieve_vectors(
        np.ascontiguousarray(queries), exclude=[exclude[i] for i in positions]
    )
    return {
        i: [(n.example, n.score) for n in r.neighbours] for i, r in zip(positions, retrievals, strict=True)
    }


def cross_fitted_extractors(
    examples: Sequence[Example],
    positions: Sequence[int],
    snap: Snapshot,
    folds: int,
    config: ExtractorConfig,
    *,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[tuple[list[int], AttributeExtractor]]:
    """(positions, the extractor their prompts are built with): one extractor per fold,
    fitted on the examples of the other folds (exact duplicates share a fold)."""
    say = progress or (lambda _msg: None)
    if folds < 2:
        raise ValueError("attribute prompts need a cross-fitted extractor (folds >= 2): fitted on the "
                         "example itself, its own values would vote for and be known to the prompt")
    fold_ids = [fold_of(ex, folds) for ex in examples]
    plan: list[tuple[list[int], AttributeExtractor]] = []
    for f in range(folds):
        rows = [i for i in positions if fold_ids[i] == f]
        if not rows:
            continue
        say(f"attribute extractor {f + 1}/{folds}")
        train = [ex for ex, fid in zip(examples, fold_ids, strict=True) if fid != f]
        plan.append((rows, AttributeExtractor.fit(snap, train, config, seed=seed)))
    return plan


def build_attribute_items(
    examples: Sequence[Example],
    snap: Snapshot,
    embedder: Embedder,
    *,
    profile: AttributePromptProfile | None = None,
    select: Sequence[int] | None = None,
    folds: int = 5,
    candidate_config: CandidateConfig | None = None,
    progress: Callable[[str], None] | None = None,
    seed: int = 0,
) -> tuple[list[AttributeTrainItem], AttributeDatasetStats]:
    """Leave-one-out attribute prompts and answers for ``examples[i]``, i in ``select``
    (default all), retrieving neighbours from all of ``examples``; the extractor is
    cross-fitted over ``folds`` (>= 2) groups."""
    if folds < 2:
        raise ValueError("attribute prompts need a cross-fitted extractor (folds >= 2): fitted on the "
                         "example itself, its own values would vote for and be known to the prompt")
    say = progress or (lambda _msg: None)
    prof = profile or agent_profile()
    cfg = extractor_config(prof)
    chosen = list(range(len(examples))) if select is None else list(select)
    stats = AttributeDatasetStats(examples=len(examples), selected=len(chosen))
    usable: list[int] = []
    for i in chosen:
        ex = examples[i]
        cat = category_of(snap, ex.tags)
        if not ex.attribute_values:
            stats.unlabelled += 1
        elif cat is None:
            stats.no_category += 1
        elif not selected_attributes(snap, cat, "on"):
            stats.no_attributes += 1
        else:
            usable.append(i)
    if not usable:
        return [], stats

    say(f"embedding {len(examples)} examples")
    neighbours = loo_neighbours(examples, usable, snap, embedder, candidate_config)
    exclude = exclusion_sets(examples)
    stats.excluded_duplicates = sum(len(exclude[i]) - 1 for i in usable)
    stats.folds = folds
    plan = cross_fitted_extractors(examples, usable, snap, folds, cfg, seed=seed, progress=say)

    built: dict[int, AttributeTrainItem] = {}
    # one OpenMP thread for the ranker's predictions: with faiss/torch's OpenMP runtime in the
    # process, sklearn's threads contend (measured ~1 s a product instead of ~0.05 s)
    with threadpool_limits(limits=1):
        _build(plan, examples, snap, neighbours, cfg, stats, built)
    items = [built[i] for i in chosen if i in built]  # the order of `select`
    stats.items = len(items)
    return items, stats



def _build(
    plan: Sequence[tuple[list[int], AttributeExtractor]],
    examples: Sequence[Example],
    snap: Snapshot,
    neighbours: Mapping[int, list[tuple[Example, float]]],
    cfg: ExtractorConfig,
    stats: AttributeDatasetStats,
    built: dict[int, AttributeTrainItem],
) -> None:
    for rows, extractor in plan:
        for i in rows:
            ex = examples[i]
            cat = category_of(snap, ex.tags)
            assert cat is not None
            text = example_text(ex)
            sent = sent_request(extractor, snap, text, cat, neighbours[i])
            keys = answer_keys(snap, cat)
            if sent is None or not keys:
                stats.no_attributes += 1
                continue
            answer, filled = attribute_answer(sent, keys, ex, extractor, shown_text(text, cfg), stats)
            built[i] = AttributeTrainItem(
                id=ex.id, system=sent.system, user=sent.user, answer=answer, category=cat,
                attributes=tuple(attr.id for _, attr in keys), filled=filled,
            )
            stats.by_category[cat] = stats.by_category.get(cat, 0) + 1


def attribute_stats_json(stats: AttributeDatasetStats) -> dict[str, Any]:
    out = asdict(stats)
    out["by_category"] = dict(sorted(stats.by_category.items()))
    return out


# --- example files with attribute values -------------------------------------------------


def _name_map(snap: Snapshot, category: str) -> dict[str, str]:
    return {fold(a.name): a.id for a in snap.attributes_for(category, include_deprecated=True)}


def read_attribute_records(path: Path, snap: Snapshot) -> list[Example]:
    """Examples from a WDC-PAVE-style file: ``{"id", "title", "description", "category",
    "gold_attributes": {name: [normalized values]}, "gold_attributes_extracted": {name:
    [as written]}}`` (attribute names are the category's, case-insensitive; ``category`` a
    node id or name of ``snap``). A record whose category is unknown is refused."""
    by_name = {fold(snap.node(n).name): n for n in sorted(snap.active_ids)}
    out: list[Example] = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{n}: not a JSON object")
            raw_cat = str(row.get("category") or "")
            cat = snap.resolve(raw_cat) or by_name.get(fold(raw_cat))
            if cat is None:
                raise ValueError(f"{path}:{n}: category {raw_cat!r} is not in the taxonomy")
            names = _name_map(snap, cat)

            def ids(raw: Any, where: int = n, category: str = cat, known: dict[str, str] = names) -> dict[str, tuple[str, ...]]:
                result: dict[str, tuple[str, ...]] = {}
                for name, values in (raw or {}).items():
                    attr = known.get(fold(str(name)))
                    if attr is None:
                        raise ValueError(f"{path}:{where}: {category!r} has no attribute {name!r}")
                    vals = [values] if isinstance(values, str) else list(values or [])
                    kept = tuple(str(v) for v in vals if str(v).strip())
                    if kept:
                        result[attr] = kept
                return result

            out.append(Example(
                str(row["id"]), str(row.get("title") or "-"), str(row.get("description") or ""), (cat,),
                {}, "", ids(row.get("gold_attributes")), ids(row.get("gold_attributes_extracted")),
            ))
    return out
