"""A synthetic WDC-PAVE-shaped attribute dataset: 3 categories, a schema in WDC-PAVE's
format, a 36-product pool and 6 dev products whose dictionary-baseline outcomes are known
by hand (see ``DICT_EXPECTED``). Made up here: no WDC or Flipkart record enters the repo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CHOICES = "Normalize to EXACTLY ONE of the following:\n"

SCHEMA: dict[str, Any] = {
    "name": "toy-pave",
    "source": "synthetic",
    "categories": {
        "Mugs": {"description": "drinking mugs", "attributes": [
            {"name": "Brand", "description": "maker", "normalization": "None", "normalized_type": "Name"},
            {"name": "Color", "description": "colour", "normalized_type": "Name",
             "normalization": CHOICES + "- Red\n- Blue\n- Green"},
            {"name": "Capacity", "description": "volume", "normalization": "None",
             "normalized_type": "Numeric with Unit"},
        ]},
        "Laptops": {"description": "portable computers", "attributes": [
            {"name": "Brand", "description": "maker", "normalization": "None", "normalized_type": "Name"},
            {"name": "RAM", "description": "memory", "normalization": "None", "normalized_type": "Numeric with Unit"},
            {"name": "Screen Size", "description": "diagonal", "normalization": "None",
             "normalized_type": "Numeric with Unit"},
        ]},
        "Shoes": {"description": "footwear", "attributes": [
            {"name": "Brand", "description": "maker", "normalization": "None", "normalized_type": "Name"},
            {"name": "Color", "description": "colour", "normalized_type": "Name",
             "normalization": CHOICES + "- Black\n- White"},
            {"name": "Size", "description": "US size", "normalization": "None", "normalized_type": "Numeric"},
        ]},
    },
}
ASKED = {cat: [a["name"] for a in spec["attributes"]] for cat, spec in SCHEMA["categories"].items()}


def _rec(i: str, cat: str, title: str, gold: dict[str, list[str]], written: dict[str, list[str]],
         description: str = "") -> dict[str, Any]:
    return {"id": i, "title": title, "description": description, "category": cat, "attributes_asked": ASKED[cat],
            "gold_attributes": gold, "gold_attributes_extracted": written, "source": "synthetic"}


def pool() -> list[dict[str, Any]]:
    out = []
    for i in range(12):
        brand, color, cap = ["Acme", "Bolt", "Cora"][i % 3], ["Red", "Blue", "Green"][(i // 3) % 3], [8, 12, 16][i % 3]
        out.append(_rec(f"pm{i}", "Mugs", f"{brand} {color.lower()} ceramic mug {cap} oz",
                        {"Brand": [brand], "Color": [color], "Capacity": [f"{cap} oz"]},
                        {"Brand": [brand], "Color": [color.lower()], "Capacity": [f"{cap} oz"]},
                        f"A {color.lower()} mug by {brand}, dishwasher safe."))
    for i in range(12):
        brand, ram, screen = ["Dell", "Lenovo", "Asus"][i % 3], [8, 16, 32][(i // 3) % 3], [13, 15][i % 2]
        out.append(_rec(f"pl{i}", "Laptops", f"{brand} laptop {ram}GB RAM {screen} inch",
                        {"Brand": [brand], "RAM": [f"{ram} GB"], "Screen Size": [f"{screen} inch"]},
                        {"Brand": [brand], "RAM": [f"{ram}GB"], "Screen Size": [f"{screen} inch"]},
                        f"Notebook computer by {brand} with {ram}GB memory."))
    for i in range(12):
        brand, color, size = ["Nike", "Puma", "Vans"][i % 3], ["Black", "White"][(i // 3) % 2], ["9", "10", "11"][i % 3]
        out.append(_rec(f"ps{i}", "Shoes", f"{brand} running shoe {color.lower()} size {size}",
                        {"Brand": [brand], "Color": [color], "Size": [size]},
                        {"Brand": [brand], "Color": [color.lower()], "Size": [size]},
                        f"Lightweight running shoe by {brand}."))
    return out


def dev() -> list[dict[str, Any]]:
    return [
        _rec("d1", "Mugs", "Acme blue ceramic mug 12 oz", {"Brand": ["Acme"], "Color": ["Blue"], "Capacity": ["12 oz"]},
             {"Brand": ["Acme"], "Color": ["blue"], "Capacity": ["12 oz"]}),
        _rec("d2", "Mugs", "Dune mug, red, 20 oz", {"Brand": ["Dune"], "Color": ["Red"], "Capacity": ["20 oz"]},
             {"Brand": ["Dune"], "Color": ["red"], "Capacity": ["20 oz"]}),
        _rec("d3", "Laptops", "Lenovo laptop 16GB RAM 15 inch",
             {"Brand": ["Lenovo"], "RAM": ["16 GB"], "Screen Size": ["15 inch"]},
             {"Brand": ["Lenovo"], "RAM": ["16GB"], "Screen Size": ["15 inch"]}),
        _rec("d4", "Laptops", "Asus laptop 8GB RAM", {"Brand": ["Asus"], "RAM": ["8 GB"]},
             {"Brand": ["Asus"], "RAM": ["8GB"]}),
        _rec("d5", "Shoes", "Puma running shoe white size 10", {"Brand": ["Puma"], "Color": ["White"], "Size": ["10"]},
             {"Brand": ["Puma"], "Color": ["white"], "Size": ["10"]}),
        # a white shoe in a black box, no size given but "11" in the text
        _rec("d6", "Shoes", "Vans running shoe, black box, 11 eyelets", {"Brand": ["Vans"], "Color": ["White"]},
             {"Brand": ["Vans"], "Color": ["white"]}),
    ]


#: what the dictionary baseline predicts on ``dev()`` (longest pool spelling found)
DICT_EXPECTED = {
    "d1": {"Brand": "Acme", "Color": "Blue", "Capacity": "12 oz"},  # VC VC VC
    "d2": {"Color": "Red"},  # Brand NV (unseen), Color VC, Capacity NV (unseen)
    "d3": {"Brand": "Lenovo", "RAM": "16 GB", "Screen Size": "15 inch"},  # VC VC VC
    "d4": {"Brand": "Asus", "RAM": "8 GB"},  # VC VC, Screen Size NN
    "d5": {"Brand": "Puma", "Color": "White", "Size": "10"},  # VC VC VC
    "d6": {"Brand": "Vans", "Color": "Black", "Size": "11"},  # VC, Color VW, Size VN
}
#: VC 13, VW 1, VN 1, NV 2, NN 1
DICT_COUNTS = {"NN": 1, "NV": 2, "VN": 1, "VC": 13, "VW": 1}


def write(dir: Path) -> dict[str, Path]:
    dir.mkdir(parents=True, exist_ok=True)
    paths = {"schema": dir / "schema.json", "pool": dir / "pool.jsonl", "dev": dir / "dev.jsonl"}
    paths["schema"].write_text(json.dumps(SCHEMA), encoding="utf-8")
    paths["pool"].write_text("".join(json.dumps(r) + "\n" for r in pool()), encoding="utf-8")
    paths["dev"].write_text("".join(json.dumps(r) + "\n" for r in dev()), encoding="utf-8")
    return paths


def write_flipkart_shaped(dir: Path) -> dict[str, Path]:
    """Flipkart's shapes: a tree with observed attributes (every attribute at every root),
    records with ``gold_tags`` and ``gold_attributes`` rows, no category, nothing asked."""
    dir.mkdir(parents=True, exist_ok=True)
    nodes = [{"id": "fk:Home", "name": "Home", "parent": None},
             {"id": "fk:Home>Mugs", "name": "Mugs", "parent": "fk:Home"},
             {"id": "fk:Shoes", "name": "Shoes", "parent": None},
             {"id": "fk:Shoes>Running", "name": "Running", "parent": "fk:Shoes"}]
    taxonomy = {"name": "toy-fk", "source": "synthetic", "attributes_note": "made up", "nodes": nodes,
                "attributes": [{"name": "Brand", "n_products": 20, "values": ["Acme", "Nike"]},
                               {"name": "Color", "n_products": 20, "values": ["Red", "Black"]}]}

    def rec(i: str, leaf: str, title: str, brand: str, color: str, warranty: str = "NA") -> dict[str, Any]:
        return {"id": i, "title": title, "description": "", "gold_tags": [leaf.split(">")[0], leaf],
                "gold_attributes": [{"attribute": "Brand", "value": brand}, {"attribute": "Color", "value": color},
                                    {"attribute": "Warranty", "value": warranty}]}

    pool = [rec(f"p{i}", "fk:Home>Mugs", f"{b} {c.lower()} coffee mug", b, c)
            for i, (b, c) in enumerate([("Acme", "Red"), ("Bolt", "Red"), ("Acme", "Black")] * 3)]
    pool += [rec(f"q{i}", "fk:Shoes>Running", f"{b} {c.lower()} running shoe", b, c)
             for i, (b, c) in enumerate([("Nike", "Black"), ("Puma", "Black"), ("Nike", "Red")] * 3)]
    dev = [rec("f1", "fk:Home>Mugs", "Bolt black coffee mug", "Bolt", "Black", "1 Year"),
           rec("f2", "fk:Shoes>Running", "Puma red running shoe", "Puma", "NA"),
           {"id": "f3", "title": "no spec table", "gold_tags": ["fk:Home"]}]
    paths = {"schema": dir / "taxonomy.json", "pool": dir / "pool.jsonl", "dev": dir / "dev.jsonl"}
    paths["schema"].write_text(json.dumps(taxonomy), encoding="utf-8")
    paths["pool"].write_text("".join(json.dumps(r) + "\n" for r in pool), encoding="utf-8")
    paths["dev"].write_text("".join(json.dumps(r) + "\n" for r in dev), encoding="utf-8")
    return paths
