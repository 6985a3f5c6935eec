"""The tagging pipeline: retrieve → (LLM picks among candidates) → validate → result.

Pipelines:
- ``knn``: the embedding neighbours' vote alone (+ taxonomy search), no LLM.
- ``hybrid`` (default): neighbours + the lexical classifier trained on the examples, no LLM.
- ``zero-shot``: the LLM over taxonomy-search candidates, without examples.
- ``rag``: the LLM with retrieved few-shot examples and the hybrid candidates.
- ``cascade``: ``hybrid`` when retrieval is confident (top probability ≥
  ``cascade_threshold``), else ``rag``.

The LLM's choice is blended with the retrieval vote (``llm_weight``), so an untuned model
that always answers the first option cannot drag accuracy far below the vote; candidates
are shown in a deterministic shuffled order so position bias does not systematically favour
the top vote. Every answer goes through the taxonomy validator; a rejected answer is
re-asked on a bounded budget, then the best retrieval candidate is used and the response
says so. Nothing off-taxonomy is ever returned.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Literal

from agent.attributes import AttributeExtractor, ProductText
from agent.contract import (
    AttributeSelection,
    AttributeTag,
    CandidateEvidence,
    Evidence,
    LLMEvidence,
    Neighbor,
    PipelineName,
    Product,
    ReviewReason,
    Tag,
    TagResult,
    Timings,
)
from agent.llm import (
    ChatMessage,
    LLMBackend,
    LLMError,
    LLMUnavailableError,
    OptionScorer,
    option_scorer,
    tags_schema,
)
from agent.llm.manifest import PromptProfile
from prompts import PromptBuilder, RenderedPrompt
from retrieval import Candidate, CandidateGenerator, ProductLike, Retrieval, text_of
from retrieval.calibration import DEFAULT_REVIEW_THRESHOLD
from retrieval.readability import UNREADABLE_SHARE
from taxonomy import Snapshot, TagValidator

ANSWER_PREFIX = '{"tags":["'
LLM_PIPELINES = frozenset({"zero-shot", "rag", "cascade"})
ANSWER_SUFFIX = '"]}'
LLMMode = Literal["auto", "generate", "score"]
#: a neighbour at least this similar is the same product (thin_vote does not apply)
NEAR_DUPLICATE = 0.95
#: the blend weight for a model that brings none (chosen for the untuned SmolLM2)
DEFAULT_LLM_WEIGHT = 0.3


@dataclass(frozen=True)
class TaggerConfig:
    pipeline: PipelineName = "hybrid"
    max_candidates: int = 8
    max_examples: int = 4
    llm_weight: float | None = None
    """The LLM's share in the blend with the vote; None: the weight fitted for the model
    (its manifest, ``tagsmith finetune``) or else :data:`DEFAULT_LLM_WEIGHT`."""
    cascade_threshold: float = 0.8
    review_threshold: float | None = None
    """``needs_review`` below this confidence. None: the threshold fitted for the index
    generation (its calibration, for ``target_precision``); an explicit value always wins.
    Without a fitted calibration (tiny pool, old generation) and for the LLM pipelines
    ``rag`` and ``zero-shot`` (whose confidence blends in the LLM): 0.5."""
    target_precision: float | None = None
    """The precision of unflagged answers the fitted threshold aims at (None: the one the
    generation was calibrated for)."""
    reask_budget: int = 2
    shuffle_candidates: bool = True
    max_neighbors_shown: int = 5
    llm_mode: LLMMode = "auto"
    """``score``: the model's probability over the candidate letters (one forward pass;
    needs an :class:`OptionScorer` backend), blended with the vote; ``generate``: one
    constrained answer (a one-hot choice); ``auto``: score when the backend can."""
    attributes: AttributeSelection = "on"
    """Which of the category's attributes to tag when a call does not say."""
    attribute_review_threshold: float = 0.5
    """An attribute value below this confidence sends the result to review."""
    attribute_llm: bool = False
    """Ask the LLM (one call per product, all attributes at once) to confirm or add values.
    Off by default: measured on WDC-PAVE, see docs/benchmarks.md."""


@dataclass
class _LLMOutcome:
    probs: dict[str, float] = field(default_factory=dict)  # tag id -> probability
    attempts: int = 0
    rejections: list[str] = field(default_factory=list)
    failed: bool = False
    answered: bool = False  # the backend answered at least once (even if badly)
    unavailable: str | None = None  # the last "backend unavailable" error, if any
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def degraded(self) -> bool:
        """Answered from retrieval alone because the backend was down, not because it
        answered badly: decided per product, from this product's own calls."""
        return self.failed and not self.answered and self.unavailable is not None


class Tagger:
    def __init__(
        self,
        generator: CandidateGenerator,
        llm: LLMBackend | None,
        *,
        config: TaggerConfig | None = None,
        prompts: PromptBuilder | None = None,
        validator: TagValidator | None = None,
        extractor: AttributeExtractor | None = None,
    ) -> None:
        self.generator = generator
        self._extractor = extractor
        self._extractor_lock = threading.Lock()
        self.llm = llm
        config = config or TaggerConfig()
        info = llm.info if llm is not None else None
        # a fine-tuned model is only right on the prompt it was trained with: its backend
        # carries that prompt's shape (from the model manifest), which wins over the config
        profile = info.prompt_profile if info is not None else None
        if profile is not None:
            config = replace(
                config, max_candidates=profile.max_candidates, max_examples=profile.max_examples
            )
            prompts = prompts or prompt_builder(profile)
        if config.llm_weight is None:
            fitted = info.blend_weight if info is not None else None
            config = replace(config, llm_weight=fitted if fitted is not None else DEFAULT_LLM_WEIGHT)
        self.config = config
        self.llm_weight: float = config.llm_weight if config.llm_weight is not None else DEFAULT_LLM_WEIGHT
        self.prompts = prompts or PromptBuilder()
        self.scorer: OptionScorer | None = option_scorer(llm)
        """The backend as an option scorer, when its info says it scores options."""
        if config.llm_mode == "score" and info is not None and self.scorer is None:
            raise ValueError(f"llm_mode 'score' needs a backend that scores options, not {info.name!r}")
        self.validator = validator or TagValidator(leaf_only=False)
        if self.config.pipeline in LLM_PIPELINES and llm is None:
            raise ValueError(f"pipeline {self.config.pipeline!r} needs an LLM backend")

    @property
    def snapshot(self) -> Snapshot:
        return self.generator.snapshot

    @property
    def review_threshold(self) -> float:
        """The confidence below which an answer goes to review: the configured one, else the
        one fitted for this index generation (see :attr:`TaggerConfig.review_threshold`)."""
        cfg = self.config
        if cfg.review_threshold is not None:
            return cfg.review_threshold
        calibration = self.generator.calibration
        if calibration is None or not calibration.fitted or cfg.pipeline in ("rag", "zero-shot"):
            return DEFAULT_REVIEW_THRESHOLD
        return calibration.threshold(cfg.target_precision, lexical=cfg.pipeline != "knn")

    def _calibrated(self, scores: dict[str, float], *, lexical: bool) -> dict[str, float]:
        """The generation's calibration map applied to the top answer's probability (the
        others scaled to share the rest)."""
        calibration = self.generator.calibration
        if calibration is None or not calibration.fitted or not scores:
            return scores
        top = max(scores, key=lambda k: scores[k])
        old = scores[top]
        new = calibration.confidence(old, lexical=lexical)
        rest = (1.0 - new) / (1.0 - old) if old < 1.0 else 0.0
        return {k: (new if k == top else v * rest) for k, v in scores.items()}

    def _doubts(self, retrieval: Retrieval, winner: str, pipeline: str) -> list[ReviewReason]:
        """Out-of-distribution reasons: text the embedder cannot read, a product far from
        every example, a winning category backed by a single neighbour."""
        reasons: list[ReviewReason] = []
        if retrieval.unreadable > UNREADABLE_SHARE:
            reasons.append("unreadable_text")
        index = self.generator.index
        if pipeline == "zero-shot" or index is None or not len(index):
            return reasons
        calibration = self.generator.calibration
        far = calibration.far_similarity if calibration is not None else None
        nearest = max((n.score for n in retrieval.neighbours), default=0.0)
        if far is not None and nearest < far:
            reasons.append("far_from_examples")
        # examples count as support when at least as close as a typical product's nearest
        # example (the fitted far similarity), else when close enough to vote at all; one
        # example that is the same product (a near-duplicate) is not thin evidence
        floor = far if far is not None else self.generator.config.far_similarity
        support = [n.score for n in retrieval.neighbours if winner in n.tags and n.score >= floor]
        if len(support) == 1 and support[0] < NEAR_DUPLICATE:
            reasons.append("thin_vote")
        return reasons

    @property
    def extractor(self) -> AttributeExtractor:
        """The attribute extractor, fitted on the index's examples on first use (once per
        tagger: a new index generation or taxonomy version gets a new tagger)."""
        if self._extractor is None:
            with self._extractor_lock:
                if self._extractor is None:
                    index = self.generator.index
                    examples = list(index) if index is not None else []
                    self._extractor = AttributeExtractor.fit(self.snapshot, examples)
        return self._extractor

    def tag(self, product: Product, *, attributes: AttributeSelection | None = None) -> TagResult:
        return self.tag_many([product], attributes=attributes)[0]

    def tag_many(
        self,
        products: Sequence[Product],
        *,
        attributes: AttributeSelection | None = None,
        categories: Sequence[str | None] | None = None,
    ) -> list[TagResult]:
        """Tag products, results in input order. Retrieval (embedding) is batched; the
        per-product LLM steps run ``llm.info.max_concurrency`` at a time (a served model batches
        concurrent requests; the embedded engine takes one at a time, so 1).

        ``attributes``: which attributes to tag (default: the config's); ``categories``: a
        known category per product (None: choose it), whose attributes are then tagged."""
        selection = self.config.attributes if attributes is None else attributes
        if categories is not None and len(categories) != len(products):
            raise ValueError("categories must have one entry per product")
        known = list(categories) if categories is not None else [None] * len(products)
        if selection != "off":
            _ = self.extractor  # fit before the workers need it
        start = time.perf_counter()
        pipeline = self.config.pipeline
        retrievals = self.generator.retrieve(
            list(products), examples=pipeline != "zero-shot", lexical=pipeline != "knn"
        )
        per_item_retrieval_ms = (time.perf_counter() - start) * 1000.0 / max(1, len(products))
        items = list(zip(products, retrievals, known, strict=True))
        workers = 1
        if self.llm is not None and pipeline in LLM_PIPELINES:
            workers = max(1, min(self.llm.info.max_concurrency, len(items)))

        def finish(item: tuple[Product, Retrieval, str | None]) -> TagResult:
            return self._finish(item[0], item[1], per_item_retrieval_ms, selection, item[2])

        if workers == 1:
            return [finish(it) for it in items]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tagger-llm") as pool:
            # map() yields in submission order, whatever order the requests finish in
            return list(pool.map(finish, items))

    # -- one product -------------------------------------------------------------------
    def _finish(
        self, product: Product, retrieval: Retrieval, retrieval_ms: float,
        selection: AttributeSelection = "off", category: str | None = None,
    ) -> TagResult:
        snap = self.snapshot
        cfg = self.config
        t0 = time.perf_counter()
        if category is not None:
            return self._with_category(product, retrieval, retrieval_ms, selection, category, t0)
        candidates = select_candidates(retrieval, snap, cfg.max_candidates)
        votes = {c.id: c.probability for c in candidates}
        pipeline = cfg.pipeline
        if pipeline == "cascade":
            top = max(votes.values(), default=0.0)
            pipeline = "hybrid" if top >= cfg.cascade_threshold else "rag"
        outcome = _LLMOutcome()
        llm_ms = 0.0
        if candidates and pipeline in LLM_PIPELINES and self.llm is not None:
            t_llm = time.perf_counter()
            outcome = self._ask_llm(product, retrieval, [c.id for c in candidates], pipeline)
            llm_ms = (time.perf_counter() - t_llm) * 1000.0
        t_val = time.perf_counter()
        scores = _blend(votes, outcome.probs, self.llm_weight if outcome.probs else 0.0)
        if pipeline in ("hybrid", "knn"):
            scores = self._calibrated(scores, lexical=pipeline == "hybrid")
        tags: list[Tag] = []
        fallback = bool(outcome.failed)
        for tag_id, confidence in sorted(scores.items(), key=lambda kv: -kv[1]):
            report = self.validator.validate(snap, [tag_id])
            if report.ok:
                node = snap.node(tag_id)
                tags.append(
                    Tag(
                        id=tag_id,
                        name=node.name,
                        path=list(snap.path_names(tag_id)),
                        confidence=round(min(max(confidence, 0.0), 1.0), 6),
                    )
                )
                break
            outcome.rejections.append(f"{tag_id}: {report.errors[0].message}")
            fallback = True
        validation_ms = (time.perf_counter() - t_val) * 1000.0
        attributes = self._attributes(product, retrieval, tags[0].id, selection, outcome) if tags else []
        total_ms = retrieval_ms + (time.perf_counter() - t0) * 1000.0
        confidence = tags[0].confidence if tags else 0.0
        reasons: list[ReviewReason] = []
        if not tags:
            reasons.append("no_tag")
        else:
            if confidence < self.review_threshold:
                reasons.append("low_confidence")
            reasons += self._doubts(retrieval, tags[0].id, pipeline)
        if fallback:
            reasons.append("llm_fallback")
        if self._doubtful(attributes):
            reasons.append("attribute_low_confidence")
        return TagResult(
            id=product.id,
            tags=tags,
            attributes=attributes,
            needs_review=bool(reasons),
            taxonomy_version=snap.version,
            pipeline=cfg.pipeline if cfg.pipeline == pipeline else f"{cfg.pipeline}:{pipeline}",
            evidence=Evidence(
                neighbors=[
                    Neighbor(id=n.example.id, score=round(n.score, 6), tags=list(n.tags))
                    for n in retrieval.neighbours[: cfg.max_neighbors_shown]
                ],
                candidates=_candidate_evidence(snap, scores, cfg.max_neighbors_shown),
                review_reasons=reasons,
                llm=LLMEvidence(
                    attempts=outcome.attempts,
                    fallback_used=fallback,
                    rejections=outcome.rejections[:5],
                    model=self.llm.info.model if (self.llm is not None and outcome.attempts) else None,
                    prompt_tokens=outcome.prompt_tokens,
                    completion_tokens=outcome.completion_tokens,
                    degraded=outcome.degraded,
                    degraded_reason=outcome.unavailable if outcome.degraded else None,
                ),
            ),
            timings_ms=Timings(
                retrieval=round(retrieval_ms, 3),
                llm=round(llm_ms, 3),
                validation=round(validation_ms, 3),
                total=round(total_ms, 3),
            ),
        )

    def _attributes(
        self, product: Product, retrieval: Retrieval, category: str, selection: AttributeSelection,
        outcome: _LLMOutcome | None = None,
    ) -> list[AttributeTag]:
        """The category's attribute tags; the LLM's calls for them are added to ``outcome``."""
        if selection == "off":
            return []
        text = ProductText.of(
            product.title, product.description, category_text=product.category_text,
            attributes=product.attributes,
        )
        neighbours = [(n.example, n.score) for n in retrieval.neighbours]
        llm = self.llm if self.config.attribute_llm else None
        tags, answer = self.extractor.extract_with_llm(
            self.snapshot, text, category, neighbours, selection, llm
        )
        if answer is not None and outcome is not None:
            outcome.attempts += answer.attempts
            outcome.prompt_tokens += answer.prompt_tokens
            outcome.completion_tokens += answer.completion_tokens
            outcome.rejections.extend(f"attributes: {r}" for r in answer.rejections)
            if answer.unavailable is not None and not answer.answered:
                outcome.unavailable = answer.unavailable
        return tags

    def _doubtful(self, attributes: Sequence[AttributeTag]) -> bool:
        floor = self.config.attribute_review_threshold
        return any(v.confidence < floor for a in attributes for v in a.values)

    def _with_category(
        self, product: Product, retrieval: Retrieval, retrieval_ms: float,
        selection: AttributeSelection, category: str, t0: float,
    ) -> TagResult:
        """A product whose category the caller knows: its attributes only."""
        snap = self.snapshot
        report = self.validator.validate(snap, [category])
        tags: list[Tag] = []
        rejections: list[str] = []
        if report.ok:
            tags = [Tag(id=category, name=snap.node(category).name,
                        path=list(snap.path_names(category)), confidence=1.0)]
        else:
            rejections.append(f"{category}: {report.errors[0].message}")
        outcome = _LLMOutcome(rejections=rejections)
        attributes = self._attributes(product, retrieval, category, selection, outcome) if tags else []
        total_ms = retrieval_ms + (time.perf_counter() - t0) * 1000.0
        reasons: list[ReviewReason] = []
        if not tags:
            reasons.append("no_tag")
        if self._doubtful(attributes):
            reasons.append("attribute_low_confidence")
        return TagResult(
            id=product.id, tags=tags, attributes=attributes,
            needs_review=bool(reasons),
            taxonomy_version=snap.version, pipeline="given-category",
            evidence=Evidence(
                neighbors=[
                    Neighbor(id=n.example.id, score=round(n.score, 6), tags=list(n.tags))
                    for n in retrieval.neighbours[: self.config.max_neighbors_shown]
                ],
                review_reasons=reasons,
                llm=LLMEvidence(
                    attempts=outcome.attempts, fallback_used=False, rejections=outcome.rejections[:5],
                    model=self.llm.info.model if (self.llm is not None and outcome.attempts) else None,
                    prompt_tokens=outcome.prompt_tokens, completion_tokens=outcome.completion_tokens,
                    degraded=outcome.unavailable is not None,
                    degraded_reason=outcome.unavailable,
                ),
            ),
            timings_ms=Timings(retrieval=round(retrieval_ms, 3), llm=0.0, validation=0.0,
                               total=round(total_ms, 3)),
        )

    def _prompt(
        self, product: Product, retrieval: Retrieval, candidate_ids: list[str], pipeline: str
    ) -> RenderedPrompt:
        return render_prompt(
            self.prompts, self.snapshot, product, retrieval, candidate_ids,
            with_examples=pipeline == "rag", max_examples=self.config.max_examples,
            shuffle=self.config.shuffle_candidates,
        )

    def _ask_llm(
        self, product: Product, retrieval: Retrieval, candidate_ids: list[str], pipeline: str
    ) -> _LLMOutcome:
        assert self.llm is not None
        prompt = self._prompt(product, retrieval, candidate_ids, pipeline)
        letters = [o.letter for o in prompt.options]
        to_id = prompt.letter_to_id()
        messages = [ChatMessage("system", prompt.system), ChatMessage("user", prompt.user)]
        outcome = _LLMOutcome()
        if self.scorer is not None and self.config.llm_mode != "generate":
            outcome.attempts = 1
            try:
                scores = self.scorer.score_options(
                    messages, letters, assistant_prefix=ANSWER_PREFIX, continuations=[ANSWER_SUFFIX]
                )
            except (LLMError, ValueError) as exc:
                outcome.failed = True
                outcome.rejections.append(f"scoring failed: {exc}")
                if isinstance(exc, LLMUnavailableError):
                    outcome.unavailable = _reason(exc)
                return outcome
            outcome.answered = True
            outcome.probs = {to_id[k]: v for k, v in scores.probs.items() if k in to_id}
            outcome.prompt_tokens = scores.prompt_tokens
            outcome.completion_tokens = 1  # one forward pass reads the option token's logits
            return outcome
        schema = tags_schema(letters)
        for _ in range(1 + self.config.reask_budget):
            outcome.attempts += 1
            try:
                gen = self.llm.generate(messages, schema, max_tokens=16)
            except LLMError as exc:
                outcome.rejections.append(f"backend error: {exc}")
                if isinstance(exc, LLMUnavailableError):
                    outcome.unavailable = _reason(exc)
                continue
            outcome.answered = True
            outcome.prompt_tokens += gen.prompt_tokens
            outcome.completion_tokens += gen.completion_tokens
            answer = gen.parsed.get("tags") if isinstance(gen.parsed, dict) else None
            if isinstance(answer, list) and len(answer) == 1 and answer[0] in to_id:
                outcome.probs = {to_id[answer[0]]: 1.0}
                return outcome
            problem = f"answer {gen.text[:60]!r} is not one of the letters {', '.join(letters)}"
            outcome.rejections.append(problem)
            messages = [
                *messages[:2],
                ChatMessage("assistant", gen.text[:60]),
                ChatMessage("user", f"Invalid: {problem}. Answer again with one candidate letter."),
            ]
        outcome.failed = True
        return outcome


def _reason(exc: Exception) -> str:
    return (str(exc) or type(exc).__name__)[:300]


def _blend(votes: dict[str, float], llm: dict[str, float], weight: float) -> dict[str, float]:
    """Weighted mix of the renormalised retrieval vote and the LLM distribution."""
    total = sum(votes.values())
    vote_share = {k: (v / total if total > 0 else 1.0 / len(votes)) for k, v in votes.items()}
    return {k: (1 - weight) * vote_share[k] + weight * llm.get(k, 0.0) for k in votes}


def prompt_builder(profile: PromptProfile) -> PromptBuilder:
    return PromptBuilder(
        version=profile.version,
        max_product_chars=profile.max_product_chars,
        max_example_chars=profile.max_example_chars,
        max_label_chars=profile.max_label_chars,
    )


def _candidate_evidence(snap: Snapshot, scores: dict[str, float], limit: int) -> list[CandidateEvidence]:
    """The best ``limit`` categories weighed, as shown to reviewers (active ones only)."""
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    return [
        CandidateEvidence(id=i, name=snap.node(i).name, probability=round(min(max(p, 0.0), 1.0), 6))
        for i, p in ranked if snap.is_active(i)
    ][:limit]


def select_candidates(retrieval: Retrieval, snap: Snapshot, max_candidates: int) -> list[Candidate]:
    """The candidates the LLM is shown: active ones, best first."""
    return [c for c in retrieval.candidates if snap.is_active(c.id)][:max_candidates]


def render_prompt(
    builder: PromptBuilder,
    snap: Snapshot,
    product: ProductLike,
    retrieval: Retrieval,
    candidate_ids: Sequence[str],
    *,
    with_examples: bool,
    max_examples: int,
    shuffle: bool = True,
) -> RenderedPrompt:
    """The tagging prompt, exactly as the agent asks it. Shared with fine-tuning
    (agent.finetune), which must train on the very prompts the agent will send.

    Candidates are shown in an order seeded by the title, so position bias does not
    systematically favour the top vote; examples are the nearest neighbours whose tag is
    a candidate (their answer must be expressible as a letter)."""
    order = list(candidate_ids)
    if shuffle:
        seed = hashlib.sha256(product.title.encode("utf-8")).digest()[:8]
        random.Random(int.from_bytes(seed, "big")).shuffle(order)
    examples: list[tuple[str, str]] = []
    if with_examples:
        for n in retrieval.neighbours:
            if len(examples) >= max_examples:
                break
            leaf = next((t for t in n.tags if t in candidate_ids), None)
            if leaf is not None:
                examples.append((n.example.title, leaf))
    return builder.build(
        text_of(product), [(tid, snap.path_text(tid)) for tid in order], examples
    )
