"""Attribute tagging: the chosen category's attributes and their values, read from the
product's text, the neighbours' values and (optionally) the LLM, validated against the
taxonomy. Public API below; the modules behind it are private."""

from agent.attributes.extractor import (
    AttributeExtractor,
    ExtractorConfig,
    product_text,
    selected_attributes,
)
from agent.attributes.text import ProductText

__all__ = ["AttributeExtractor", "ExtractorConfig", "ProductText", "product_text", "selected_attributes"]
