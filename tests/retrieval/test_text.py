from __future__ import annotations

from retrieval import Example, product_text, text_of


def test_title_always_survives_and_description_fills_the_budget() -> None:
    text = product_text("Blue Widget", "word " * 1000, max_chars=200)
    assert text.startswith("Blue Widget. word")
    assert len(text) <= 200
    assert not text.endswith(" ")


def test_breadcrumb_and_attributes_come_before_the_description() -> None:
    text = product_text(
        "Tee", "long description " * 50, attributes={"color": "red"}, breadcrumb="Men > Tops", max_chars=120
    )
    assert text.startswith("Tee. Men > Tops. color: red. long description")


def test_uninformative_breadcrumbs_and_repeated_titles_are_dropped() -> None:
    assert product_text("Mug", "Mug. Stoneware, 350 ml", breadcrumb="All Products") == "Mug. Stoneware, 350 ml"


def test_whitespace_and_control_characters_are_normalised() -> None:
    assert product_text("  Red\tmug\n", "a\x00b\u200b  c") == "Red mug. a b c"


def test_text_of_accepts_products_and_plain_queries() -> None:
    ex = Example("x", "Frying pan", "Non-stick", category_text="Kitchen")
    assert text_of(ex) == "Frying pan. Kitchen. Non-stick"
    assert text_of("  frying\npan ") == "frying pan"
