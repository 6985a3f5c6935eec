"""Attribute fine-tuning data (issue #19): the prompt is the attribute step's own request,
the answers follow the schema (closed → option names, open → the value as written, "none"),
neighbours and the extractor's knowledge are leave-one-out; the compact-JSON decoder the
transformers backend uses for those schemas; the manifest's task. No model is loaded."""

from __future__ import annotations

import inspect
import json
import random
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from agent.attributes import AttributeExtractor, ProductText
from agent.attributes.extractor import ExtractorConfig
from agent.attributes.knowledge import example_text
from agent.attributes.llm_step import LLMAttributeAnswer, ask_attributes, render_attribute_prompt
from agent.finetune.attributes import (
    AttributeDatasetStats,
    AttributeTrainItem,
    PromptDriftError,
    agent_profile,
    answer_keys,
    attribute_answer,
    build_attribute_items,
    compact_json,
    cross_fitted_extractors,
    loo_neighbours,
    read_attribute_records,
    sent_request,
    shown_text,
)
from agent.finetune.data import exclusion_sets
from agent.finetune.run import FinetuneJob, job_json, split
from agent.llm.base import LLMUnavailableError
from agent.llm.fake import RandomSchemaBackend, ScriptedBackend
from agent.llm.json_decode import Vocabulary, compile_object
from agent.llm.manifest import (
    ATTRIBUTES_TASK,
    MANIFEST_FORMAT,
    AttributePromptProfile,
    PromptProfile,
    attribute_profile_of,
    blend_weight_of,
    profile_of,
    task_of,
)
from retrieval import HashingEmbedder
from retrieval.examples import Example
from taxonomy import Snapshot
from taxonomy.model import Attribute, AttributeValue, Node, TaxonomyDocument

COLORS = ("Red", "Blue", "Black", "White", "Green")
BRANDS = ("Acme", "Zenith", "Orbis", "Kestrel", "Nimbus")


def _snapshot() -> Snapshot:
    color = Attribute(id="color", name="Color", values=tuple(
        AttributeValue(id=f"c-{c.lower()}", name=c) for c in COLORS))
    brand = Attribute(id="brand", name="Brand", open_values=True, value_type="name")
    part = Attribute(id="part", name="Part Number", open_values=True, value_type="identifier")
    width = Attribute(id="width", name="Width", open_values=True, value_type="number", unit="cm")
    material = Attribute(id="material", name="Material", open_values=True)
    doc = TaxonomyDocument(
        name="t",
        nodes=(
            Node(id="parts", name="Parts", attributes=("brand", "part", "width", "color", "material")),
            Node(id="misc", name="Misc"),
        ),
        attributes=(color, brand, part, width, material),
    )
    return Snapshot(doc, version=1)


def _examples(n: int = 60, seed: int = 3) -> list[Example]:
    """Parts with a brand, a part number (normalized without its hyphen), a width in inches
    (normalized to cm, written ``4"``), a colour, and a material for every third one."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        pn = f"{rng.randint(100000, 999999)}-B{rng.randint(10, 99)}"
        inches = rng.choice([2, 3, 4, 6, 8])
        color, brand = rng.choice(COLORS), rng.choice(BRANDS)
        values = {"brand": (brand,), "part": (pn.replace("-", ""),), "width": (f"{inches * 2.54:.1f}",),
                  "color": (f"c-{color.lower()}",)}
        mentions = {"brand": (brand,), "part": (pn,), "width": (f'{inches}"',), "color": (color.lower(),)}
        description = f"Sturdy {color.lower()} part."
        if i % 3 == 0:
            values["material"] = ("steel",)
            mentions["material"] = ("steel",)
            description += " Made of steel."
        title = f"{brand} {pn} bracket {inches}\" wide {color.lower()}"
        out.append(Example(f"p{i}", title, description, ("parts",), {}, "", values, mentions))
    return out


@pytest.fixture(scope="module")
def snap() -> Snapshot:
    return _snapshot()


@pytest.fixture(scope="module")
def pool() -> list[Example]:
    return _examples()


@pytest.fixture(scope="module")
def built(snap: Snapshot, pool: list[Example]) -> tuple[list[AttributeTrainItem], AttributeDatasetStats]:
    return build_attribute_items(pool, snap, HashingEmbedder(), folds=2)


# -- the prompt is the agent's ------------------------------------------------------------------

def test_the_training_prompt_is_the_request_the_extractor_sends(
    built: tuple[list[AttributeTrainItem], AttributeDatasetStats], snap: Snapshot, pool: list[Example],
) -> None:
    """Each training prompt is what the attribute step sends the LLM for that product, with
    the extractor of the product's fold (recorded from a real call, the tagger's neighbours)."""
    items, _ = built
    by_id = {it.id: it for it in items}
    positions = list(range(len(pool)))
    neighbours = loo_neighbours(pool, positions, snap, HashingEmbedder())
    for rows, extractor in cross_fitted_extractors(pool, positions, snap, 2, ExtractorConfig()):
        for i in rows[:5]:
            recorder = ScriptedBackend(LLMUnavailableError("recording only"))
            extractor.extract_with_llm(snap, example_text(pool[i]), "parts", neighbours[i], "on", recorder)
            assert recorder.calls == 1  # a backend that is down is not asked again
            sent = recorder.requests[0].messages
            assert [m.role for m in sent] == ["system", "user"]
            assert (sent[0].content, sent[1].content) == (by_id[pool[i].id].system, by_id[pool[i].id].user)


def test_a_request_with_other_keys_is_refused(snap: Snapshot, pool: list[Example]) -> None:
    extractor = AttributeExtractor.fit(snap, pool[:20])
    sent = sent_request(extractor, snap, example_text(pool[30]), "parts")
    assert sent is not None
    keys = answer_keys(snap, "parts")
    assert [k for k, _ in keys] == list(sent.schema["properties"])
    with pytest.raises(PromptDriftError):
        attribute_answer(sent, keys[:-1], pool[30], extractor, "")
    assert sent_request(extractor, snap, example_text(pool[30]), "misc") is None  # nothing to ask


def test_render_attribute_prompt_is_what_ask_attributes_sends(snap: Snapshot) -> None:
    from agent.attributes.llm_step import AttributeQuestion

    attrs = snap.attributes_for("parts")
    questions = [AttributeQuestion(a, (), ("hint",)) for a in attrs]
    recorder = ScriptedBackend('{"Brand":"none"}')
    ask_attributes(recorder, product_text="Acme bracket", category_path="Parts", questions=questions,
                   reask_budget=0)
    request = render_attribute_prompt("Acme bracket", "Parts", questions)
    assert list(recorder.requests[0].messages) == request.messages()
    assert recorder.requests[0].schema == request.schema


def test_the_default_profile_is_the_agents_prompt() -> None:
    cfg = ExtractorConfig()
    profile = agent_profile()
    assert (profile.max_options, profile.description_chars, profile.neighbours) == (
        cfg.llm_max_options, cfg.llm_description_chars, cfg.neighbours)
    defaults = inspect.signature(ask_attributes).parameters
    assert profile.max_product_chars == defaults["max_product_chars"].default
    assert profile.max_prompt_chars == defaults["max_prompt_chars"].default
    assert profile.max_examples == 0  # the extractor shows no few-shot examples
    assert profile == AttributePromptProfile()  # the manifest's defaults are the agent's


# -- the answers ----------------------------------------------------------------------------------

def test_answers_are_names_written_values_and_none(
    built: tuple[list[AttributeTrainItem], AttributeDatasetStats], pool: list[Example]
) -> None:
    items, stats = built
    assert stats.items == len(items) == len(pool) and stats.folds == 2
    by_id = {ex.id: ex for ex in pool}
    for item in items:
        ex = by_id[item.id]
        answer = json.loads(item.answer)
        assert list(answer) == ["Brand", "Part Number", "Width", "Color", "Material"]
        assert item.attributes == ("brand", "part", "width", "color", "material")
        assert answer["Brand"] == ex.attribute_mentions["brand"][0]
        assert answer["Part Number"] == ex.attribute_mentions["part"][0]  # as written, hyphen kept
        assert answer["Width"] == ex.attribute_mentions["width"][0].rstrip('"')  # 4" → 4: no quote in a bounded string
        assert answer["Color"] == ex.attribute_mentions["color"][0].title()  # the option name, not the id
        assert answer["Material"] == ("steel" if "material" in ex.attribute_values else "none")
        assert item.filled == 4 + ("material" in ex.attribute_values)
        assert item.answer == compact_json(answer)  # compact, as constrained decoding writes it
    assert stats.asked == 5 * len(pool) and stats.filled == sum(it.filled for it in items)
    assert stats.gold_none == sum(1 for ex in pool if "material" not in ex.attribute_values)
    assert stats.open_cut == len(pool)  # every width


def test_every_answer_is_in_the_language_of_its_request_schema(snap: Snapshot, pool: list[Example]) -> None:
    extractor = AttributeExtractor.fit(snap, pool[:40])
    for ex in pool[40:]:
        text = example_text(ex)
        sent = sent_request(extractor, snap, text, "parts")
        assert sent is not None
        answer, _ = attribute_answer(sent, answer_keys(snap, "parts"), ex, extractor,
                                     shown_text(text, extractor.config))
        machine = compile_object(sent.schema)
        assert machine is not None and machine.accepts(answer), answer
        # and the attribute step accepts every value of it
        checked = _check_answer(snap, extractor, ex, answer)
        assert not checked.rejections, checked.rejections
        assert len(checked.values) == sum(v != "none" for v in json.loads(answer).values())


def _check_answer(snap: Snapshot, extractor: AttributeExtractor, ex: Example, answer: str) -> LLMAttributeAnswer:
    """The attribute step's validation of ``answer`` for ``ex``'s real request."""
    recorder = ScriptedBackend(answer)
    _, got = extractor.extract_with_llm(snap, example_text(ex), "parts", [], "on", recorder)
    assert got is not None
    return got


def test_none_when_the_value_cannot_be_answered(snap: Snapshot, pool: list[Example]) -> None:
    """A closed value that is not among the options, an open value not in the text the
    prompt shows (cut description), or no value at all: "none"."""
    extractor = AttributeExtractor.fit(snap, pool)
    base = pool[1]
    hidden = replace(
        base, id="hidden", title="bracket", description="x " * 400 + "Acme 123456-B12 steel",
        attribute_values={**base.attribute_values, "brand": ("Acme",), "material": ("steel",),
                          "color": ("Purple",)},
        attribute_mentions={"brand": ("Acme",), "material": ("steel",)},
    )
    text = example_text(hidden)
    sent = sent_request(extractor, snap, text, "parts")
    assert sent is not None
    stats = AttributeDatasetStats()
    answer, filled = attribute_answer(sent, answer_keys(snap, "parts"), hidden, extractor,
                                      shown_text(text, extractor.config), stats)
    got = json.loads(answer)
    assert got["Brand"] == got["Material"] == "none"  # beyond the description's shown head
    assert got["Color"] == "none"  # "Purple" is no option
    assert stats.open_not_shown >= 2 and stats.closed_not_shown == 1
    assert filled == sum(v != "none" for v in got.values())


def test_examples_without_values_or_category_are_left_out(snap: Snapshot, pool: list[Example]) -> None:
    extra = [replace(pool[0], id="bare", title="bare", attribute_values={}, attribute_mentions={}),
             replace(pool[1], id="lost", title="lost", tags=("nowhere",)),
             replace(pool[2], id="misc", title="misc", tags=("misc",))]
    items, stats = build_attribute_items([*pool[:10], *extra], snap, HashingEmbedder(), folds=2)
    assert {it.id for it in items} == {ex.id for ex in pool[:10]}
    assert (stats.unlabelled, stats.no_category, stats.no_attributes, stats.folds) == (1, 1, 1, 2)
    # the attribute job's split picks only examples with values
    job = FinetuneJob(task=ATTRIBUTES_TASK, val_fraction=0.2)
    train, val = split([*pool[:10], *extra], job, snap)
    assert len(train) + len(val) == 11 and 10 not in train + val  # "bare" is out
    assert set(train).isdisjoint(val)


# -- leave one out ------------------------------------------------------------------------------

def test_neighbours_leave_out_the_example_and_its_exact_duplicates(snap: Snapshot, pool: list[Example]) -> None:
    item = pool[0]
    exact = replace(item, id="dup-exact", title=item.title.upper() + "  ")
    near = replace(item, id="dup-near", title=item.title + " kit")
    examples = [*pool, exact, near]
    assert exclusion_sets(examples)[0] == {item.id, exact.id}
    got = loo_neighbours(examples, [0], snap, HashingEmbedder())[0]
    ids = [ex.id for ex, _ in got]
    assert item.id not in ids and exact.id not in ids
    assert ids[0] == near.id  # a near-duplicate is a legitimate neighbour


def test_the_extractor_is_cross_fitted(snap: Snapshot, pool: list[Example]) -> None:
    """Each prompt's candidates come from an extractor that never saw the example."""
    positions = list(range(len(pool)))
    plan = cross_fitted_extractors(pool, positions, snap, 3, ExtractorConfig())
    covered = sorted(i for rows, _ in plan for i in rows)
    assert covered == positions and len(plan) == 3
    for rows, extractor in plan:
        own = {pool[i].id for i in rows}
        seen = set(extractor.knowledge.golds)
        assert seen and not seen & own  # its knowledge, classifiers and ranker
        voters = {ex.id for ex in extractor.neighbours.examples}
        assert voters and not voters & own  # the labelled examples whose values vote
    for folds in (0, 1):
        with pytest.raises(ValueError, match="cross-fitted"):
            build_attribute_items(pool, snap, HashingEmbedder(), folds=folds)


# -- example files ------------------------------------------------------------------------------

def test_wdc_pave_style_records_become_examples(tmp_path: Path, snap: Snapshot) -> None:
    path = tmp_path / "pool.jsonl"
    rows = [
        {"id": "a", "title": "Acme 123456-B12", "description": None, "category": "Parts",
         "attributes_asked": ["Brand", "Part Number"],
         "gold_attributes": {"brand": ["Acme"], "Part Number": ["123456B12"]},
         "gold_attributes_extracted": {"Brand": ["Acme"], "Part Number": ["123456-B12"]}},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    (ex,) = read_attribute_records(path, snap)
    assert ex.tags == ("parts",) and ex.description == ""
    assert ex.attribute_values == {"brand": ("Acme",), "part": ("123456B12",)}
    assert ex.attribute_mentions == {"brand": ("Acme",), "part": ("123456-B12",)}
    path.write_text(json.dumps({**rows[0], "gold_attributes": {"Voltage": ["5"]}}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no attribute 'Voltage'"):
        read_attribute_records(path, snap)


# -- the manifest ---------------------------------------------------------------------------------

def test_manifest_task_and_profiles() -> None:
    category = {"format": MANIFEST_FORMAT, "prompt": {"max_examples": 2}, "blend": {"llm_weight": 0.2}}
    attributes = {"format": MANIFEST_FORMAT, "task": ATTRIBUTES_TASK, "prompt": {"max_options": 30},
                  "blend": {"llm_weight": 0.2}}
    assert task_of(category) == "category" and task_of(None) == "category"
    assert profile_of(category) == PromptProfile(max_examples=2) and blend_weight_of(category) == 0.2
    assert attribute_profile_of(category) is None
    assert task_of(attributes) == "attributes"
    # an attributes model never shapes the tagging prompt nor its blend
    assert profile_of(attributes) is None and blend_weight_of(attributes) is None
    assert attribute_profile_of(attributes) == AttributePromptProfile(max_options=30)
    with pytest.raises(ValueError, match="unknown fine-tuning task"):
        task_of({"task": "poetry"})


def test_a_category_job_keys_runs_as_before() -> None:
    """Adding the task did not change a category run's key (its runs still resume)."""
    job = FinetuneJob()
    key = job_json(job)
    assert "task" not in key and "attribute_profile" not in key and key["profile"]["version"] == "tag.ft1"
    attr = job_json(replace(job, task=ATTRIBUTES_TASK))
    assert attr["task"] == ATTRIBUTES_TASK and attr["profile"] == asdict(agent_profile())
    assert attr["profile"]["version"] == "attrs.v1"


# -- compact JSON decoding ------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "Brand": {"type": "string", "maxLength": 8},
        "Color": {"type": "array", "items": {"type": "string", "enum": ["Blue", "Black"]},
                  "minItems": 0, "maxItems": 2},
        "Type": {"type": "string", "enum": ["Jeans", "none"]},
    },
    "required": ["Brand", "Color", "Type"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(("text", "ok"), [
    ('{"Brand":"Levi\'s","Color":["Blue","Black"],"Type":"none"}', True),
    ('{"Brand":"","Color":[],"Type":"Jeans"}', True),
    ('{"Brand":"Levi\'s 501","Color":[],"Type":"Jeans"}', False),  # over maxLength
    ('{"Brand":"a","Color":["Blue","Black","Blue"],"Type":"none"}', False),  # over maxItems
    ('{"Brand":"a","Color":[],"Type":"no"}', False),  # not an option
    ('{"Brand": "a","Color":[],"Type":"none"}', False),  # whitespace
    ('{"Brand":"a\\"b","Color":[],"Type":"none"}', False),  # an escape
    ('{"Color":[],"Brand":"a","Type":"none"}', False),  # order
])
def test_compact_object_language(text: str, ok: bool) -> None:
    machine = compile_object(SCHEMA)
    assert machine is not None and machine.accepts(text) is ok


def test_unsupported_schemas_are_refused() -> None:
    assert compile_object({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}) is None
    assert compile_object({"type": "array"}) is None


def test_any_walk_through_allowed_tokens_writes_a_valid_answer() -> None:
    """Greedy decoding picks among :meth:`Vocabulary.allowed`; whatever it picks, the text
    stays in the language and can always be finished."""
    machine = compile_object(SCHEMA)
    assert machine is not None
    chars = [chr(c) for c in range(32, 127)]
    tokens = [*chars, '{"', '":"', '","', '"]', '"}', '","Color":["', "Blue", "Black", "Levi", "'s", "none",
              '"],"', "Type", '":', "Jeans", "\ufffd", "\n", 'Brand":"']
    vocab = Vocabulary(tokens)
    assert "\ufffd" not in vocab.by_text and "\n" not in [vocab.texts[i] for i in vocab.allowed(machine, machine.start)]
    rng = random.Random(0)
    for _ in range(200):
        state, text = machine.start, ""
        for _step in range(200):
            allowed = vocab.allowed(machine, state)
            assert allowed, text
            token = vocab.texts[rng.choice(allowed)]
            text += token
            next_state = machine.feed(state, token)
            assert next_state is not None
            state = next_state
            if machine.done(state):
                break
        assert machine.done(state) and machine.accepts(text) and json.loads(text)


def test_random_schema_answers_are_accepted_when_compact() -> None:
    """The fake that answers random schema-valid JSON (compact) is in the decoder's language."""
    backend = RandomSchemaBackend(seed=1)
    machine = compile_object(SCHEMA)
    assert machine is not None
    from agent.llm.base import ChatMessage

    for _ in range(50):
        gen = backend.generate([ChatMessage("user", "<product>Levi's blue jeans</product>")], SCHEMA)
        assert machine.accepts(gen.text), gen.text


def test_product_text_of_an_example_is_what_the_tagger_builds() -> None:
    ex = _examples(1)[0]
    a, b = example_text(ex), ProductText.of(ex.title, ex.description, category_text="", attributes={})
    assert [(f.name, f.text) for f in a.fields] == [(f.name, f.text) for f in b.fields]


def test_forced_text_is_what_the_schema_leaves_no_choice_about() -> None:
    """The transformers backend appends such text without asking the model (one forward
    pass): the rest of a key, ``":"``, an opening quote, the enum values' common start."""
    machine = compile_object(SCHEMA)
    assert machine is not None

    def forced_after(text: str) -> str:
        state = machine.feed(machine.start, text)
        assert state is not None
        return machine.forced(state)

    assert forced_after("") == '{"Brand":"'
    assert forced_after('{"Brand":"Le') == ""  # inside a bounded string: the model writes
    assert forced_after('{"Brand":"Levi\'s"') == ',"Color":['
    assert forced_after('{"Brand":"x","Color":[') == ""  # "]" or an item
    assert forced_after('{"Brand":"x","Color":["B') == "l"  # Blue or Black
    assert forced_after('{"Brand":"x","Color":["Blue"') == ""  # "," or "]"
    assert forced_after('{"Brand":"x","Color":["Blue","Black"') == '],"Type":"'  # maxItems reached
    assert forced_after('{"Brand":"x","Color":[],"Type":"J') == 'eans"}'
    assert machine.accepts('{"Brand":"x","Color":[],"Type":"J' + 'eans"}')
