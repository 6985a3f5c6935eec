"""Small hand-made taxonomies for the taxonomy tests."""

from __future__ import annotations

from pathlib import Path

from taxonomy import Attribute, AttributeValue, Node, Snapshot, TaxonomyDocument

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
GOOGLE_JSON = "taxonomies/google_product_taxonomy_2021-09-21.json"
SHOPIFY_JSON = "taxonomies/shopify_categories_2024-07.json"


def apparel_document() -> TaxonomyDocument:
    """apparel > {tops > {shirts, t-shirts}, shoes}, food > fruit; Color on apparel, Size on shoes."""
    color = Attribute(
        id="color", name="Color", cardinality="multi",
        values=(AttributeValue(id="red", name="Red"), AttributeValue(id="blue", name="Blue")),
    )
    size = Attribute(
        id="size", name="Shoe size",
        values=tuple(AttributeValue(id=str(n), name=str(n)) for n in range(36, 47)),
    )
    brand = Attribute(id="brand", name="Brand", open_values=True)
    nodes = (
        Node(id="apparel", name="Apparel", attributes=("color", "brand")),
        Node(id="tops", name="Tops", parent="apparel", synonyms=("Upper body",)),
        Node(id="shirts", name="Shirts", parent="tops"),
        Node(id="tshirts", name="T-Shirts", parent="tops", synonyms=("Tees",)),
        Node(id="shoes", name="Shoes", parent="apparel", attributes=("size",)),
        Node(id="food", name="Food"),
        Node(id="fruit", name="Fruit", parent="food", description="fresh fruit"),
        Node(id="old-fruit", name="Old fruit", parent="food", deprecated=True, replaced_by="fruit"),
    )
    return TaxonomyDocument(name="apparel test", source_version="t1", nodes=nodes, attributes=(color, size, brand))


def apparel() -> Snapshot:
    return Snapshot(apparel_document())
