"""Publishing and loading one full-size index generation: a directory vs the database.

Where should replicas share index generations (issue 21)? This times, for a generation the
size of the MWPD pool's (10,012 examples, 384-dimensional vectors as MiniLM's, the lexical
classifier trained on them), :meth:`retrieval.IndexStore.publish` and ``load_bundle``
against a data directory (:class:`retrieval.store.FileGenerations`, fsynced) and against a
database (:class:`retrieval.generations_db.DatabaseGenerations`: rows, one transaction)::

    .venv/bin/python -m evals.benchmarks.index_generations --database-url postgresql+psycopg://…
    .venv/bin/python -m evals.benchmarks.index_generations --database-url sqlite:////tmp/g.db

Vectors come from the hashing embedder (384 dims): the bytes, not their meaning, are what
is timed. Prints a JSON line per backend (median of ``--repeat`` runs, seconds, and MB):
a full publication, a load, and the publication of a feedback-style update (one example
more, the lexical classifier unchanged: the database stores unchanged files once).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from contextlib import closing
from pathlib import Path

from retrieval import (
    Example,
    ExampleIndex,
    HashingEmbedder,
    IndexStore,
    LexicalClassifier,
    build_index,
)
from retrieval.generations_db import DatabaseGenerations
from taxonomy.schema import make_engine

REPO = Path(__file__).resolve().parents[2]
POOL = REPO.parent / "shared" / "data" / "mwpd" / "pool.jsonl"


def pool_examples(path: Path = POOL) -> list[Example]:
    examples = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            examples.append(Example(id=r["id"], title=r["title"], description=r.get("description") or "",
                                    tags=(r["gold_leaf"],)))
    return examples


def measure(
    store: IndexStore, index: ExampleIndex, lexical: LexicalClassifier, embedder: HashingEmbedder, repeat: int
) -> dict[str, object]:
    """Median seconds of: publishing ``index`` with ``lexical`` (all files new), loading it,
    and publishing an update as a feedback example makes one on a big index (one example
    added, the lexical classifier unchanged until its background retrain)."""
    publish, load, update = [], [], []
    name = embedder.name
    for i in range(repeat):
        started = time.perf_counter()
        manifest = store.publish(index, embedder=name, lexical=lexical, extra={"run": i})
        publish.append(time.perf_counter() - started)
        started = time.perf_counter()
        store.load_bundle(embedder=name, dim=manifest.dim)
        load.append(time.perf_counter() - started)
        changed = ExampleIndex.from_files(index.to_files())
        example = Example(id=f"feedback-{i}", title=f"feedback product {i}", tags=(index.get(index.ids()[0]).tags))  # type: ignore[union-attr]
        changed.upsert([example], embedder.encode([example.text()]))
        started = time.perf_counter()
        store.publish(changed, embedder=name, lexical=lexical)
        update.append(time.perf_counter() - started)
    megabytes = sum(int(f["bytes"]) for f in manifest.files.values()) / 1e6
    lexical_mb = sum(int(f["bytes"]) for n, f in manifest.files.items() if n.startswith("lexical")) / 1e6
    return {"where": store.where.split(" (")[0], "examples": manifest.count, "mb": round(megabytes, 1),
            "lexical_mb": round(lexical_mb, 1), "publish_s": round(statistics.median(publish), 2),
            "load_s": round(statistics.median(load), 2), "update_publish_s": round(statistics.median(update), 2),
            "runs": repeat}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", action="append", default=[], help="a database to time (repeatable)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="first N pool products only")
    args = parser.parse_args()
    examples = pool_examples()[: args.limit]
    embedder = HashingEmbedder(dim=384)
    index = build_index(embedder, examples)
    lexical = LexicalClassifier.fit(list(index))
    assert lexical is not None
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure(IndexStore(Path(tmp) / "index"), index, lexical, embedder, args.repeat)), flush=True)
    for url in args.database_url:
        with closing(IndexStore(backend=DatabaseGenerations(make_engine(url), "database " + url.split(":")[0]))) as store:
            print(json.dumps(measure(store, index, lexical, embedder, args.repeat)), flush=True)


if __name__ == "__main__":
    main()
