"""Resident memory added by the default taxonomy's attribute schema (issue 19: ≤ 300 MB).

The packaged default (Shopify 2024-07: 10,281 categories with 1,966 attributes and 16,821
values) is compared with the same document stripped of its attributes (the categories-only
default tagsmith shipped before). Each is measured in a fresh interpreter, so that neither
inherits the other's heap: RSS after the imports, then after each thing the service holds
for the current taxonomy version:

- ``snapshot``: ``load_default_taxonomy()`` (the store's import builds the same), including
  what parsing the file left behind in the allocator;
- ``+ indexes``: the taxonomy search index (``taxonomy.search``) and the look-alike indexes
  the validator builds on a near-miss id;
- ``+ graph``: the networkx graph (``Snapshot.graph``; built on first use only, the service
  does not use it today);
- ``+ attributes_for``: ``attributes_for`` of every active leaf, kept (an upper bound for a
  per-category cache of the attribute lists);
- ``+ extractor``: the attribute extractor the service fits when a view is built
  (as ``serve.runtime.fit_extractor``: the taxonomy's value names and what the shipped
  examples teach), its fit time as ``fit_s``;
- ``+ tagger, requests``: the tagger over that snapshot, the shipped examples' index and the
  extractor, after tagging :data:`PRODUCTS` with attributes on (what a served request leaves
  behind). Its candidate generator embeds with the hashing embedder, not MiniLM, to keep the
  run short: its memory is the same with and without attributes, so the difference between
  the two rows is still the attribute schema's.

Also the load time (median of the repeats) and the peak RSS while loading, and, for the
store's history cache (``taxonomy.store.HISTORY_BUDGET``, counted in nodes + values), the
memory of one old version decoded from its own checkpoint (the worst case: 8 versions made
with ``checkpoint_every=1``, all cached). Usage::

    .venv/bin/python -m evals.benchmarks.attribute_schema_memory [--repeats 3]
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_MB = 300.0
STAGES = ("snapshot", "+ indexes", "+ graph", "+ attributes_for", "+ extractor", "+ tagger, requests")
PRODUCTS = (
    "Levi's 501 Original Fit men's jeans, dark stonewash denim, 32x32",
    "Apple iPhone 12 128GB red, brand new sealed",
    "Stainless steel french press coffee maker 1 l",
    "Women's merino wool hiking socks, grey, size M, 3 pairs",
)


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reset_peak() -> None:
    """Start VmHWM (peak RSS) afresh (Linux: writing 5 to clear_refs)."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")


def _peak_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        line = next(x for x in fh if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def child(path: str) -> dict[str, float]:
    """Measure one taxonomy file in this (fresh) process: MB added per stage, load time."""
    from taxonomy import load_taxonomy
    from taxonomy.search import search_index

    gc.collect()
    base = _rss_mb()
    out: dict[str, float] = {}
    _reset_peak()
    started = time.perf_counter()
    snap = load_taxonomy(path, "json")
    out["load_s"] = time.perf_counter() - started
    out["peak_mb"] = _peak_mb() - base
    gc.collect()
    out["snapshot"] = _rss_mb() - base
    keep: list[object] = [search_index(snap), snap.lookalike_ids, snap.lookalike_names]
    gc.collect()
    out["+ indexes"] = _rss_mb() - base
    keep.append(snap.graph)
    gc.collect()
    out["+ graph"] = _rss_mb() - base
    keep.append({leaf: snap.attributes_for(leaf) for leaf in snap.active_leaf_ids})
    gc.collect()
    out["+ attributes_for"] = _rss_mb() - base
    out["values"] = sum(len(a.values) for a in snap.attributes.values())

    from agent.attributes import AttributeExtractor
    from agent.contract import Product
    from agent.tagger import Tagger
    from retrieval import CandidateGenerator, HashingEmbedder, build_index, packaged_examples

    embedder = HashingEmbedder()
    index = build_index(embedder, packaged_examples())  # not counted: the same in both rows
    gc.collect()
    base_index = _rss_mb()
    started = time.perf_counter()
    extractor = AttributeExtractor.fit(snap, list(index))  # as serve.runtime.fit_extractor does
    out["fit_s"] = time.perf_counter() - started
    gc.collect()
    out["+ extractor"] = out["+ attributes_for"] + _rss_mb() - base_index
    tagger = Tagger(CandidateGenerator(embedder, snap, index), None, extractor=extractor)
    results = tagger.tag_many([Product(id=str(i), title=t) for i, t in enumerate(PRODUCTS)], attributes="on")
    keep += [extractor, tagger, results]
    gc.collect()
    out["+ tagger, requests"] = out["+ attributes_for"] + _rss_mb() - base_index
    out["attribute_values"] = sum(len(a.values) for r in results for a in r.attributes)
    return out


def history_child(path: str, versions: int = 8) -> dict[str, float]:
    """MB per old version in the store's history cache, each decoded from its checkpoint."""
    from taxonomy import AddSynonym, TaxonomyStore, read_document
    from taxonomy.store import _weight

    with tempfile.TemporaryDirectory() as tmp, TaxonomyStore(
        f"sqlite:///{tmp}/taxonomy.db", checkpoint_every=1, history_budget=10**9
    ) as store:
        store.import_document(read_document(path, "json"))
        leaf = min(store.current().active_leaf_ids)
        for i in range(versions):
            store.apply([AddSynonym(id=leaf, synonym=f"synonym {i}")], expected_version=store.version)
        gc.collect()
        base = _rss_mb()
        for version in range(1, versions + 1):
            store.snapshot(version)
        gc.collect()
        per_version = (_rss_mb() - base) / versions
        return {"weight": _weight(store.current()), "mb_per_version": per_version}


def categories_only(dest: Path) -> Path:
    """The packaged default without its attributes, written like the packaged file."""
    from taxonomy import Snapshot, load_default_taxonomy
    from taxonomy.formats.json_format import dump_json

    doc = load_default_taxonomy().document
    nodes = tuple(n.model_copy(update={"attributes": (), "excluded_attributes": ()}) for n in doc.nodes)
    meta = {k: v for k, v in doc.meta.items() if k != "attributes_source"}
    bare = doc.model_copy(update={"nodes": nodes, "attributes": (), "meta": meta})
    text = dump_json(Snapshot(bare), indent=None)
    dest.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    return dest


def run(path: Path, mode: str = "--child") -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-m", "evals.benchmarks.attribute_schema_memory", mode, str(path)],
        check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2],
    )
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per file (median)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--history-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    if args.history_child:
        print(json.dumps(history_child(args.history_child)))
        return

    from taxonomy import default_taxonomy_path

    with tempfile.TemporaryDirectory() as tmp:
        files = {
            "categories only": categories_only(Path(tmp) / "categories.json.gz"),
            "default (with attributes)": default_taxonomy_path(),
        }
        results = {name: [run(path) for _ in range(args.repeats)] for name, path in files.items()}
        history = {name: run(path, "--history-child") for name, path in files.items()}
    median = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in results.items()}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, median of {args.repeats} fresh processes\n")
    print("| taxonomy | values | load (s) | peak while loading (MB) | extractor fit (s) | "
          + " | ".join(f"{s} (MB)" for s in STAGES) + " | attribute values in the answers |")
    print("|---|---:|---:|---:|---:|" + "---:|" * len(STAGES) + "---:|")
    for name, m in median.items():
        cells = [f"{m['values']:,.0f}", f"{m['load_s']:.2f}", f"{m['peak_mb']:.1f}", f"{m['fit_s']:.2f}",
                 *(f"{m[s]:.1f}" for s in STAGES), f"{m['attribute_values']:.0f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    cats, full = median["categories only"], median["default (with attributes)"]
    added = {s: full[s] - cats[s] for s in STAGES}
    print("\nadded by the attribute schema: " + ", ".join(f"{s} {v:+.1f} MB" for s, v in added.items()))
    from taxonomy.store import HISTORY_BUDGET

    for name, h in history.items():
        kept = max(1, int(HISTORY_BUDGET // h["weight"]))
        print(f"history cache, {name}: weight {h['weight']:,.0f}, {h['mb_per_version']:.1f} MB per old version "
              f"({h['mb_per_version'] * 2**20 / h['weight'] / 1024:.2f} KB per unit); budget {HISTORY_BUDGET:,} "
              f"keeps {kept} (~{kept * h['mb_per_version']:.0f} MB)")
    worst = max(added.values())
    print(f"budget {BUDGET_MB:.0f} MB: {'within' if worst <= BUDGET_MB else 'OVER'} ({worst:.1f} MB at most)")
    if worst > BUDGET_MB:
        sys.exit(1)


if __name__ == "__main__":
    main()
