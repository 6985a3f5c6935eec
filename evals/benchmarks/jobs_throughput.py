"""Job throughput (products/s) of real ``tagsmith serve`` replicas on one database: the jobs
in the data directory's SQLite file, a shared SQLite file, or PostgreSQL (``--database-url``).

Measured through HTTP only (evals does not import the service): the first replica starts
on a new data directory (the packaged default taxonomy, its index built and calibrated by
the first start), the others get a copy of its index; one job of ``--items`` short product
titles is posted to the first replica, and the time from the 202 to ``completed`` gives
products/s. The default pipeline (``hybrid``: embedding neighbours + the lexical
classifier) with the model-free hashing embedder (``--embedder hashing``; ``default``: the
packaged MiniLM), so the figure is about the jobs machinery and the retrieval pipeline, not
about MiniLM.

Usage::

    .venv/bin/python -m evals.benchmarks.jobs_throughput --items 5000                 # SQLite (data dir)
    .venv/bin/python -m evals.benchmarks.jobs_throughput --items 5000 --replicas 3 \\
        --database-url postgresql+psycopg://tagsmith:PASSWORD@127.0.0.1:5432/bench    # an empty database
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
TAGSMITH = str(Path(sys.executable).parent / "tagsmith")
ADMIN = "bench-admin-" + "Kq7x" * 10
TITLES = [
    "Merino wool hiking socks", "Cast iron skillet 12 inch", "USB-C charging cable 2 m", "Men's denim jacket",
    "Stainless steel water bottle", "Wireless gaming mouse", "Cotton crew neck t-shirt", "Espresso machine",
    "1000 piece jigsaw puzzle", "Leather running shoes", "Noise cancelling headphones", "Chef knife 20 cm",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Replica:
    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = (data_dir.parent / f"{data_dir.name}.log").open("wb")
        self.proc = subprocess.Popen(
            [TAGSMITH, "serve", "--port", str(self.port)], env={**os.environ, **env, "TAGSMITH_DATA_DIR": str(data_dir)},
            cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"a replica exited: see {self.log.name}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=30).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"a replica was not ready in {timeout} s: see {self.log.name}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def run(args: argparse.Namespace, root: Path) -> dict[str, object]:
    env = {"TAGSMITH_AUTH__ADMIN_KEY": ADMIN, "TAGSMITH_JOBS__BATCH_SIZE": str(args.batch_size),
           "TAGSMITH_TAGGING__PIPELINE": args.pipeline, "TAGSMITH_LOG_LEVEL": "warning"}
    if args.embedder == "hashing":
        env["TAGSMITH_EMBEDDER__BACKEND"] = "hashing"
    if args.database_url:
        env["TAGSMITH_DATABASE_URL"] = args.database_url
    replicas = [Replica(root / "r0", env)]
    try:
        started = time.monotonic()
        replicas[0].wait_ready()
        first_start = time.monotonic() - started
        for n in range(1, args.replicas):
            shutil.copytree(root / "r0" / "index", root / f"r{n}" / "index")
            replicas.append(Replica(root / f"r{n}", env))
        for replica in replicas[1:]:
            replica.wait_ready()
        body = "".join(
            json.dumps({"custom_id": f"c{i:06d}", "product": {"title": f"{TITLES[i % len(TITLES)]} {i}"}}) + "\n"
            for i in range(args.items)
        ).encode()
        headers = {"Authorization": f"Bearer {ADMIN}"}
        t0 = time.monotonic()
        created = httpx.post(f"{replicas[0].base}/v1/jobs", content=body, headers=headers, timeout=600)
        created.raise_for_status()
        t1 = time.monotonic()
        job_id = created.json()["id"]
        while True:
            answer = httpx.get(f"{replicas[0].base}/v1/jobs/{job_id}", headers=headers, timeout=60)
            if answer.status_code == 503:  # the database busy beyond its timeout: ask again
                print(f"503 while polling: {answer.text[:300]}", file=sys.stderr)
                time.sleep(1)
                continue
            answer.raise_for_status()
            job = answer.json()
            if job["state"] not in ("queued", "running"):
                break
            time.sleep(0.1)
        t2 = time.monotonic()
        results = httpx.get(f"{replicas[0].base}/v1/jobs/{job_id}/results", headers=headers, timeout=600).text
        t3 = time.monotonic()
    finally:
        for replica in replicas:
            replica.stop()
    lines = results.splitlines()
    assert job["state"] == "completed" and len(lines) == args.items, (job, len(lines))
    assert len({json.loads(line)["custom_id"] for line in lines}) == args.items
    return {
        "backend": "postgresql" if (args.database_url or "").startswith("postgresql") else "sqlite",
        "shared": bool(args.database_url), "replicas": args.replicas, "items": args.items,
        "batch_size": args.batch_size, "pipeline": args.pipeline, "embedder": args.embedder,
        "first_start_s": round(first_start, 1), "upload_s": round(t1 - t0, 2), "tagging_s": round(t2 - t1, 2),
        "products_per_s": round(args.items / (t2 - t1), 1), "results_download_s": round(t3 - t2, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--database-url", default=None, help="an empty database (default: SQLite in each data dir)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pipeline", default="hybrid")
    parser.add_argument("--embedder", choices=["hashing", "default"], default="hashing")
    args = parser.parse_args()
    if args.replicas > 1 and not args.database_url:
        parser.error("several replicas share jobs through --database-url only")
    root = Path(tempfile.mkdtemp(prefix="tagsmith-jobs-bench-"))
    print(json.dumps(run(args, root)))  # on a failure the replicas' logs stay in root
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
