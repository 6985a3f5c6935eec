"""Regenerate a candidate packaged default taxonomy: Shopify 2024-07 categories + 2024-04
attributes and values (issue 19). Writes our JSON format, gzipped; it does not replace
taxonomy/data/ by itself (copy the output there and update taxonomy/default.py and NOTICE).

    PYTHONPATH=. python scripts/build_default_taxonomy.py [OUT] [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from taxonomy.formats.shopify_attributes import build_packaged_default

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="shopify_2024-07_with_attributes.json.gz")
    parser.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    args = parser.parse_args()
    shared = Path(args.shared) / "taxonomies"
    doc = build_packaged_default(
        shared / "shopify_categories_2024-07.json", shared / "shopify_attributes_2024-04.json", args.out
    )
    values = sum(len(a.values) for a in doc.attributes)
    size = Path(args.out).stat().st_size
    print(f"{args.out}: {len(doc.nodes)} categories, {len(doc.attributes)} attributes, {values} values, {size} bytes")


if __name__ == "__main__":
    main()
