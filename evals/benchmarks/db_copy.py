"""``tagsmith db copy`` of a realistic single-machine installation: how long, how much memory.

The source data directory holds what months on one machine leave behind, at full size where
size matters: the packaged default taxonomy (Shopify 2024-07, ~10k categories with
attributes: the biggest checkpoint blobs), the packaged Google crosswalk with its taxonomy,
one index generation of the MWPD pool (10,012 examples, 384-dimensional vectors from the
hashing embedder, the lexical classifier trained on them: ~90 MB), and ``--job-items``
products of finished jobs (items and results rows, the biggest tables). The stores are made
by ``tagsmith db upgrade`` and filled through the taxonomy and retrieval packages (evals does
not import the service); job rows go in through the reflected tables.

Then ``tagsmith db copy --from`` runs as a child process into the target (a new shared SQLite
file, or ``--database-url``, an empty database); its wall time and peak resident memory (of
that process alone) are printed as one JSON line, with a ``--dry-run``'s peak memory
beside it (the same imports, no rows: what the rows themselves cost)::

    .venv/bin/python -m evals.benchmarks.db_copy --job-items 200000
    .venv/bin/python -m evals.benchmarks.db_copy --database-url postgresql+psycopg://…/empty
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, insert

from evals.benchmarks.index_generations import pool_examples
from retrieval import HashingEmbedder, IndexStore, LexicalClassifier, build_index
from taxonomy import TaxonomyStore, seed_default_taxonomy
from taxonomy.crosswalk_catalog import CrosswalkCatalog
from taxonomy.schema import make_engine

TAGSMITH = str(Path(sys.executable).parent / "tagsmith")


def make_installation(data: Path, job_items: int, limit: int | None) -> dict[str, Any]:
    env = {**os.environ, "TAGSMITH_DATA_DIR": str(data), "TAGSMITH_DATABASE_URL": ""}
    subprocess.run([TAGSMITH, "db", "upgrade"], env=env, check=True, capture_output=True)
    with TaxonomyStore(f"sqlite:///{data / 'taxonomy.db'}") as store:
        snap = seed_default_taxonomy(store)
        with CrosswalkCatalog(data, store) as catalog:
            catalog.install_packaged("google")
    embedder = HashingEmbedder(dim=384)
    index = build_index(embedder, pool_examples()[:limit])
    IndexStore(data / "index").publish(index, embedder=embedder.name, taxonomy_version=snap.version,
                                       lexical=LexicalClassifier.fit(list(index)))
    engine = make_engine(f"sqlite:///{data / 'jobs' / 'jobs.db'}")
    tables = MetaData()
    tables.reflect(engine)
    item = json.dumps({"product": {"id": "sku", "title": "Stainless steel french press 1 l, borosilicate glass"}})
    line = json.dumps({"custom_id": "c", "tags": [{"id": "gid://shopify/TaxonomyCategory/hg-11-10", "confidence": 0.93}]})
    with engine.begin() as conn:
        for start in range(0, job_items, 10_000):
            seqs = range(start, min(start + 10_000, job_items))
            conn.execute(insert(tables.tables["job_items"]),
                         [{"job_id": "job_bench", "seq": s, "custom_id": f"c{s}", "item": item} for s in seqs])
            conn.execute(insert(tables.tables["job_results"]),
                         [{"job_id": "job_bench", "seq": s, "custom_id": f"c{s}", "ok": 1, "line": line} for s in seqs])
    engine.dispose()
    files = [p for p in data.rglob("*") if p.is_file()]
    return {"source_mb": round(sum(p.stat().st_size for p in files) / 1e6, 1), "examples": len(index),
            "job_items": job_items}


#: runs a command and prints its peak RSS (KiB): a fresh small process forks it, so the figure
#: is the command's own (a child forked from this big process would carry its high-water mark
#: through exec)
PEAK = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(done.returncode)")


def run(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Seconds, peak RSS (MB) and output of ``tagsmith`` ``args``."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK, TAGSMITH, *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"tagsmith {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    peak_kib = int(done.stderr.strip().splitlines()[-1])
    return seconds, peak_kib / 1024, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=None, help="an empty database (default: a new shared SQLite file)")
    parser.add_argument("--job-items", type=int, default=100_000)
    parser.add_argument("--limit", type=int, default=None, help="first N pool products only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "one-machine"
        started = time.perf_counter()
        made = make_installation(source, args.job_items, args.limit)
        made["make_s"] = round(time.perf_counter() - started, 1)
        url = args.database_url or f"sqlite:///{Path(tmp) / 'shared' / 'state.db'}"
        env = {**os.environ, "TAGSMITH_DATA_DIR": str(Path(tmp) / "replica"), "TAGSMITH_DATABASE_URL": url}
        _, dry_mb, _ = run(["db", "copy", "--from", str(source), "--dry-run"], env)
        seconds, peak_mb, output = run(["db", "copy", "--from", str(source)], env)
        print(output, file=sys.stderr)
        print(json.dumps({"target": url.split(":")[0], **made, "copy_s": round(seconds, 1),
                          "peak_rss_mb": round(peak_mb), "dry_run_peak_rss_mb": round(dry_mb)}), flush=True)


if __name__ == "__main__":
    main()
