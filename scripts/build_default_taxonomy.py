"""Rebuild the packaged default taxonomy: Shopify 2024-07 categories + 2024-04 attributes and
values (issue 19), with the value synonyms of taxonomy/formats/shopify_synonyms.py. Writes
our JSON format, gzipped, to taxonomy/data/ (loaded by taxonomy/default.py; attribution in
taxonomy/data/NOTICE). The bytes depend only on the inputs: re-running reproduces the file.

    PYTHONPATH=. python scripts/build_default_taxonomy.py [OUT] [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from taxonomy.default import default_taxonomy_path
from taxonomy.formats.shopify_attributes import build_packaged_default

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=str(default_taxonomy_path()))
    parser.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    args = parser.parse_args()
    shared = Path(args.shared) / "taxonomies"
    doc = build_packaged_default(
        shared / "shopify_categories_2024-07.json", shared / "shopify_attributes_2024-04.json", args.out
    )
    values = sum(len(a.values) for a in doc.attributes)
    synonyms = sum(len(v.synonyms) for a in doc.attributes for v in a.values)
    excluded = sum(len(n.excluded_attributes) for n in doc.nodes)
    data = Path(args.out).read_bytes()
    print(
        f"{args.out}: {len(doc.nodes)} categories, {len(doc.attributes)} attributes, {values} values "
        f"({synonyms} value synonyms), {excluded} inherited attributes excluded; "
        f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}"
    )


if __name__ == "__main__":
    main()
