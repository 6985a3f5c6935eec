"""Attribute extraction on WDC-PAVE dev: no LLM vs the untuned vs the fine-tuned LLM (issue #19).

    .venv/bin/python -m evals.benchmarks.finetune_attributes --model runs/ft-attrs --limit 30 \
        --out runs/ft-attrs-eval

The attribute extractor is fitted on the pool (as at inference), each dev offer gets its
retrieval neighbours from the pool, its category is given and the attributes asked are the
record's ``attributes_asked`` (as in the paper). Each configuration runs the extractor on the
same offers: ``none`` (no LLM), ``untuned`` (the base model the fine-tune started from) and
``finetuned`` (``--model``), both LLMs through the transformers backend (the same constrained
decoder, so only the weights differ). Scored per WDC-PAVE (normalized values; per offer and
attribute asked: NN, NV, VN, VC, VW; P = VC/(VC+VW+VN), R = VC/(VC+VW+NV)), for the pipeline
(extractor + LLM) and for the LLM's own answers alone (its values normalized by the
extractor's normalizer), with the paired F1 difference to ``none`` (bootstrap over offers).
Predictions are appended per offer to ``OUT/<config>.jsonl``: an interrupted run resumes.
"""

from __future__ import annotations

import os

# sklearn's OpenMP (the extractor's ranker) contends with faiss/torch in one process: one
# thread for it (~1 s a product otherwise); the LLM sets its own torch threads (--threads)
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.attributes import AttributeExtractor, ProductText
from agent.finetune.attributes import read_attribute_records
from agent.llm.base import LLMBackend
from retrieval import CandidateGenerator, Embedder, Example, build_index, text_of
from taxonomy import Snapshot, load_taxonomy
from taxonomy.folding import fold

Counts = dict[str, int]


def _same(a: str, b: str) -> bool:
    return fold(a) == fold(b)


def judge(predicted: str | None, gold: Sequence[str]) -> str:
    """One (offer, attribute asked) of WDC-PAVE: NN, NV, VN, VC or VW."""
    if not gold:
        return "NN" if predicted is None else "VN"
    if predicted is None:
        return "NV"
    return "VC" if any(_same(predicted, g) for g in gold) else "VW"


def prf(counts: Counts) -> dict[str, float]:
    vc, vw, vn, nv = (counts.get(k, 0) for k in ("VC", "VW", "VN", "NV"))
    p = vc / (vc + vw + vn) if vc + vw + vn else 0.0
    r = vc / (vc + vw + nv) if vc + vw + nv else 0.0
    return {"precision": 100 * p, "recall": 100 * r, "f1": 100 * (2 * p * r / (p + r) if p + r else 0.0)}


def paired_f1_difference(a: list[Counts], b: list[Counts], n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """F1(a) - F1(b) over the same offers, with a 95% bootstrap interval (offers resampled)."""
    def total(rows: list[Counts], idx: Sequence[int]) -> Counts:
        out: Counts = {}
        for i in idx:
            for k, v in rows[i].items():
                out[k] = out.get(k, 0) + v
        return out

    n = len(a)
    every = range(n)
    diff = prf(total(a, every))["f1"] - prf(total(b, every))["f1"]
    rng = random.Random(seed)
    boots = []
    for _ in range(n_boot):
        idx = [rng.randrange(n) for _ in range(n)]
        boots.append(prf(total(a, idx))["f1"] - prf(total(b, idx))["f1"])
    boots.sort()
    return {"diff": diff, "lo": boots[int(0.025 * n_boot)], "hi": boots[int(0.975 * n_boot) - 1]}


def _neighbours(
    pool: Sequence[Example], snap: Snapshot, embedder: Embedder, records: Sequence[dict[str, Any]]
) -> list[list[tuple[Example, float]]]:
    generator = CandidateGenerator(embedder, snap, build_index(embedder, pool))
    texts = [text_of(_product(r), generator.config.max_chars) for r in records]
    retrievals = generator.retrieve_vectors(embedder.encode(texts))
    return [[(n.example, n.score) for n in r.neighbours] for r in retrievals]


def _product(record: dict[str, Any]) -> Example:
    return Example(str(record["id"]), record.get("title") or "-", record.get("description") or "", ())


def _load_jsonl(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    out = {}
    for line in path.open(encoding="utf-8"):
        if line.strip():
            row = json.loads(line)
            out[row["id"]] = row
    return out


def run_config(
    name: str, llm: LLMBackend | None, extractor: AttributeExtractor, snap: Snapshot,
    records: Sequence[dict[str, Any]], neighbours: Sequence[list[tuple[Example, float]]], out: Path,
) -> list[dict[str, Any]]:
    """Predictions of one configuration, one line per offer in ``out/<name>.jsonl`` (resumed)."""
    path = out / f"{name}.jsonl"
    done = _load_jsonl(path)
    with path.open("a", encoding="utf-8") as fh:
        for n, (record, near) in enumerate(zip(records, neighbours, strict=True), 1):
            if record["id"] in done:
                continue
            category = snap.resolve(record["category"])
            assert category is not None, record["category"]
            by_name = {fold(a.name): a for a in snap.attributes_for(category)}
            asked = [by_name[fold(a)] for a in record["attributes_asked"] if fold(a) in by_name]
            text = ProductText.of(record.get("title") or "-", record.get("description") or "")
            start = time.perf_counter()
            tags, answer = extractor.extract_with_llm(snap, text, category, near, [a.id for a in asked], llm)
            seconds = time.perf_counter() - start
            pipeline = {t.name: t.values[0].value for t in tags if t.values}
            llm_alone: dict[str, str] = {}
            if answer is not None:
                for a in asked:
                    values = answer.values.get(a.id)
                    if not values:
                        continue
                    if a.closed:
                        v = a.value(values[0])
                        llm_alone[a.name] = v.name if v is not None else values[0]
                    else:
                        llm_alone[a.name] = extractor.normalizer.normalize(a, values[0]) or values[0]
            row = {
                "id": record["id"], "attributes": pipeline, "llm_attributes": llm_alone, "seconds": round(seconds, 3),
                "llm_answered": bool(answer and answer.answered), "llm_rejections": len(answer.rejections) if answer else 0,
                "completion_tokens": answer.completion_tokens if answer else 0,
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            done[record["id"]] = row
            print(f"{name} {n}/{len(records)} {seconds:.1f}s", flush=True)
    return [done[r["id"]] for r in records]


def score(records: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]], key: str) -> list[Counts]:
    per_offer = []
    for record, row in zip(records, rows, strict=True):
        gold = {fold(k): v for k, v in (record.get("gold_attributes") or {}).items()}
        predicted = {fold(k): v for k, v in row[key].items()}
        counts: Counts = {}
        for name in record["attributes_asked"]:
            verdict = judge(predicted.get(fold(name)), gold.get(fold(name), []))
            counts[verdict] = counts.get(verdict, 0) + 1
        per_offer.append(counts)
    return per_offer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a `tagsmith finetune --task attributes` directory")
    parser.add_argument("--base", type=Path, help="the untuned model directory (default: the manifest's base export)")
    parser.add_argument("--dataset", type=Path, default=Path("../shared/data/wdc-pave/dev.jsonl"))
    parser.add_argument("--examples", type=Path, default=Path("../shared/data/wdc-pave/pool.jsonl"))
    parser.add_argument("--taxonomy", type=Path, default=Path("../shared/data/wdc-pave/schema.json"))
    parser.add_argument("--limit", type=int, default=30, help="the first N dev offers")
    parser.add_argument("--configs", default="none,untuned,finetuned")
    parser.add_argument("--embedder", choices=("minilm", "hashing"), default="minilm")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from agent.llm.manifest import read_manifest
    from agent.llm.transformers_backend import TransformersBackend
    from retrieval import HashingEmbedder, SentenceTransformerEmbedder

    args.out.mkdir(parents=True, exist_ok=True)
    snap = load_taxonomy(args.taxonomy, "wdc-pave")
    pool = read_attribute_records(args.examples, snap)
    records = [json.loads(line) for line in args.dataset.open(encoding="utf-8") if line.strip()][: args.limit]
    embedder: Embedder = HashingEmbedder() if args.embedder == "hashing" else SentenceTransformerEmbedder()
    t0 = time.perf_counter()
    extractor = AttributeExtractor.fit(snap, pool)
    neighbours = _neighbours(pool, snap, embedder, records)
    print(f"extractor fitted, neighbours retrieved in {time.perf_counter() - t0:.0f}s", flush=True)
    base = args.base
    if base is None:
        from agent.finetune.run import resolve_base

        manifest = read_manifest(args.model) or {}
        base_name = str((manifest.get("base") or {}).get("name") or "smollm2")
        # where `tagsmith finetune` put it: the service's data directory (serve.settings'
        # default, spelled out here because evals does not import serve)
        data_dir = os.environ.get("TAGSMITH_DATA_DIR") or str(
            Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "tagsmith"
        )
        base = resolve_base(base_name, Path(data_dir) / "models")[0]
    results: dict[str, Any] = {"n": len(records), "configs": {}}
    per_offer: dict[str, dict[str, list[Counts]]] = {}
    for name in args.configs.split(","):
        llm: LLMBackend | None = None
        if name == "untuned":
            llm = TransformersBackend(base, n_threads=args.threads)
        elif name == "finetuned":
            llm = TransformersBackend(args.model, n_threads=args.threads)
        rows = run_config(name, llm, extractor, snap, records, neighbours, args.out)
        if llm is not None:
            llm.close()
        per_offer[name] = {"pipeline": score(records, rows, "attributes")}
        entry: dict[str, Any] = {"pipeline": prf(_sum(per_offer[name]["pipeline"])),
                                 "seconds_per_offer": sum(r["seconds"] for r in rows) / max(1, len(rows))}
        if name != "none":
            per_offer[name]["llm"] = score(records, rows, "llm_attributes")
            entry["llm_alone"] = prf(_sum(per_offer[name]["llm"]))
            entry["completion_tokens_per_offer"] = sum(r["completion_tokens"] for r in rows) / max(1, len(rows))
        results["configs"][name] = entry
    if "none" in per_offer:
        for name in per_offer:
            if name != "none":
                results["configs"][name]["pipeline_minus_none"] = paired_f1_difference(
                    per_offer[name]["pipeline"], per_offer["none"]["pipeline"])
    if "untuned" in per_offer and "finetuned" in per_offer:
        results["finetuned_minus_untuned"] = {
            part: paired_f1_difference(per_offer["finetuned"][part], per_offer["untuned"][part])
            for part in ("pipeline", "llm")
        }
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"| configuration (first {len(records)} dev offers) | P | R | F1 | F1 of the LLM's answers alone | s/offer |")
    print("|---|---|---|---|---|---|")
    for name, entry in results["configs"].items():
        p = entry["pipeline"]
        alone = entry.get("llm_alone")
        print(f"| {name} | {p['precision']:.1f} | {p['recall']:.1f} | {p['f1']:.1f} | "
              f"{'' if alone is None else format(alone['f1'], '.1f')} | {entry['seconds_per_offer']:.1f} |")
    print(json.dumps({k: v for k, v in results.items() if k != "configs"}, indent=1))


def _sum(rows: list[Counts]) -> Counts:
    out: Counts = {}
    for counts in rows:
        for k, v in counts.items():
            out[k] = out.get(k, 0) + v
    return out


if __name__ == "__main__":
    main()
