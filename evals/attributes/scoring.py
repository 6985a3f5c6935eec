"""WDC-PAVE's attribute metric, with bootstrap CIs, breakdowns and paired differences.

Per (offer, attribute asked) one outcome (Brinkmann, Baumann, Bizer 2024):

====  ===========================================================================
NN    no gold value, no prediction
NV    a gold value, no prediction
VN    no gold value, a prediction
VC    the prediction equals one of the gold values (the alternatives all count)
VW    a prediction, not equal to any gold value
====  ===========================================================================

P = VC / (VC + VW + VN), R = VC / (VC + VW + NV), F1 = 2PR / (P + R), in %. Values match
case-insensitively with whitespace collapsed; only the first predicted value counts; a
predicted "n/a" or empty value is no prediction. This is exactly
``../shared/tools/score_wdc_pave.py`` (a test runs both on the same predictions).

The attributes asked are the record's ``attributes_asked``; a record without them (Flipkart:
no list is published) is scored on its gold attributes and its predicted ones, i.e. every
attribute of its category, since the others are NN, which enters neither P nor R.

``compute_attribute_metrics(records)`` → the body of ``metrics.json`` for ``--task
attributes``:

=======================  =====================================================================
key                      meaning
=======================  =====================================================================
``task``                 ``"attributes"``
``n`` / ``pairs``        offers / (offer, attribute asked) pairs scored
``precision`` …          ``recall``, ``f1`` (%) and ``counts`` {NN, NV, VN, VC, VW}
``ci95``                 95% percentile-bootstrap intervals of precision, recall, F1 (offers
                         resampled with :func:`evals.metrics.resample_weights`)
``per_category``         per category (the given one, else the gold path's root): ``n`` offers,
                         P/R/F1, counts, ``f1_ci95``
``per_attribute``        per attribute (``"<category> / <name>"`` when categories are given):
                         ``category``, ``attribute``, ``pairs``, ``with_gold``, P/R/F1, counts,
                         ``f1_ci95``
``extracted``            the same overall score of the values *as written*
                         (``attributes_as_written``) against ``gold_attributes_extracted``; null
                         when the dataset has no extracted gold
``category_accuracy``    % of offers whose chosen category is the gold one, over the offers whose
                         category was not given but is known (null when none, or when the solver
                         names no category at all, as the dictionary baseline)
``off_schema_values``    predicted values outside the schema (an attribute the category does not
                         have, a closed value not allowed): must be 0
``values_per_offer``     predicted attribute values per offer (all values, not only the first)
``needs_review_rate``    share of offers flagged for review
``latency_ms``           ``p50``/``p95``/``mean`` per offer
=======================  =====================================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evals.metrics import resample_weights

OUTCOMES = ("NN", "NV", "VN", "VC", "VW")
_VC, _VW, _VN, _NV = OUTCOMES.index("VC"), OUTCOMES.index("VW"), OUTCOMES.index("VN"), OUTCOMES.index("NV")
CORRECT = frozenset({"NN", "VC"})


def norm(value: object) -> str:
    """The matching form: lower-cased, whitespace collapsed (as the reference scorer)."""
    return " ".join(str(value).lower().split())


def predicted_values(pred: object) -> list[str]:
    """A prediction (a value, a list of values, or nothing) as matching forms; "n/a" and
    empty values are no prediction."""
    values = [pred] if isinstance(pred, str) else (list(pred) if isinstance(pred, list | tuple) else [])
    return [norm(v) for v in values if v and norm(v) != "n/a"]


def outcome(gold: Sequence[str], pred: object) -> str:
    """NN, NV, VN, VC or VW of one (offer, attribute)."""
    gv = {norm(v) for v in gold}
    pv = predicted_values(pred)
    if not gv:
        return "VN" if pv else "NN"
    if not pv:
        return "NV"
    return "VC" if pv[0] in gv else "VW"


def prf(counts: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """(P, R, F1) in % from counts in :data:`OUTCOMES` order (0 where undefined)."""
    c = np.asarray(counts, dtype=float)
    p = c[_VC] / max(1.0, c[_VC] + c[_VW] + c[_VN])
    r = c[_VC] / max(1.0, c[_VC] + c[_VW] + c[_NV])
    f = 2 * p * r / (p + r) if p + r else 0.0
    return 100.0 * p, 100.0 * r, 100.0 * f


def _f1_rows(counts: np.ndarray) -> np.ndarray:
    """F1 (%) of each row of an (m, 5) count matrix."""
    vc, vw, vn, nv = counts[:, _VC], counts[:, _VW], counts[:, _VN], counts[:, _NV]
    p = vc / np.maximum(1.0, vc + vw + vn)
    r = vc / np.maximum(1.0, vc + vw + nv)
    return np.asarray(100.0 * np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0))


@dataclass(frozen=True)
class Pair:
    offer: int  # index of the record
    category: str
    attribute: str  # the attribute name
    outcome: str
    gold: bool  # the offer has a gold value for it


def _asked(rec: Mapping[str, Any], gold: Mapping[str, Sequence[str]], pred: Mapping[str, Any]) -> list[str]:
    asked = rec.get("attributes_asked")
    if isinstance(asked, list):
        return [str(a) for a in asked]
    return sorted({*gold, *(k for k, v in pred.items() if predicted_values(v))})


def pairs_of(records: Sequence[Mapping[str, Any]], *, extracted: bool = False) -> list[Pair]:
    """Every scored (offer, attribute) of prediction records (``attributes``,
    ``gold_attributes``, ``attributes_asked``, ``score_category``)."""
    out = []
    for i, rec in enumerate(records):
        gold_key, pred_key = (("gold_attributes_extracted", "attributes_as_written") if extracted
                              else ("gold_attributes", "attributes"))
        gold = rec.get(gold_key) or {}
        pred = rec.get(pred_key) or {}
        category = str(rec.get("score_category") or rec.get("category") or "<unknown>")
        for name in _asked(rec, gold, pred):
            values = gold.get(name, [])
            out.append(Pair(i, category, name, outcome(values, pred.get(name)), bool(values)))
    return out


def _matrix(pairs: Sequence[Pair], n: int, keep: Sequence[bool] | None = None) -> np.ndarray:
    """(n offers, 5) outcome counts per offer, of the pairs kept."""
    m = np.zeros((n, len(OUTCOMES)))
    for j, p in enumerate(pairs):
        if keep is None or keep[j]:
            m[p.offer, OUTCOMES.index(p.outcome)] += 1
    return m


def _ci(samples: np.ndarray) -> list[float]:
    return [round(float(np.percentile(samples, 2.5)), 3), round(float(np.percentile(samples, 97.5)), 3)]


def _summary(counts: np.ndarray) -> dict[str, Any]:
    p, r, f = prf(counts)
    return {"precision": round(p, 3), "recall": round(r, 3), "f1": round(f, 3),
            "counts": {k: int(v) for k, v in zip(OUTCOMES, counts, strict=True)}}


def _weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.array(list(resample_weights(n, n_boot, seed))) if n_boot else np.zeros((0, n))


def _breakdown(
    pairs: Sequence[Pair], n: int, groups: Mapping[str, Sequence[bool]], w: np.ndarray
) -> dict[str, tuple[dict[str, Any], np.ndarray]]:
    out = {}
    for name, keep in groups.items():
        m = _matrix(pairs, n, keep)
        out[name] = (_summary(m.sum(axis=0)), _f1_rows(w @ m) if len(w) else np.zeros(0))
    return out


def _category_correct(rec: Mapping[str, Any]) -> bool | None:
    if rec.get("category_given") or not rec.get("gold_category"):
        return None
    return bool(rec.get("category") == rec.get("gold_category"))


def compute_attribute_metrics(
    records: Sequence[Mapping[str, Any]], *, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Metrics of attribute prediction records (the lines of a run's ``predictions.jsonl``,
    with ``latency_ms`` merged in); keys as in the module docstring."""
    if not records:
        raise ValueError("no predictions to score")
    if n_boot < 0:
        raise ValueError("n_boot must be >= 0")
    n = len(records)
    pairs = pairs_of(records)
    w = _weights(n, n_boot, seed)
    overall = _matrix(pairs, n)
    out: dict[str, Any] = {"task": "attributes", "n": n, "pairs": len(pairs), **_summary(overall.sum(axis=0))}
    ci: dict[str, list[float]] = {}
    if n_boot:
        boot = w @ overall
        rows = np.array([prf(c) for c in boot])
        ci = {k: _ci(rows[:, i]) for i, k in enumerate(("precision", "recall", "f1"))}
    out["ci95"] = ci

    categories = sorted({p.category for p in pairs} | {str(r.get("score_category") or "<unknown>") for r in records})
    per_cat = {}
    cat_of = [str(r.get("score_category") or r.get("category") or "<unknown>") for r in records]
    for name, (summary, f1s) in _breakdown(pairs, n, {c: [p.category == c for p in pairs] for c in categories}, w).items():
        per_cat[name] = {"n": sum(1 for c in cat_of if c == name), **summary,
                         "f1_ci95": _ci(f1s) if len(f1s) else None}
    out["per_category"] = per_cat

    given = all(bool(r.get("category_given")) for r in records)
    keys = sorted({(p.category, p.attribute) for p in pairs})

    def label(cat: str, attr: str) -> str:
        return f"{cat} / {attr}" if given else attr

    groups: dict[str, list[bool]] = {}
    for cat, attr in keys:
        groups.setdefault(label(cat, attr), [False] * len(pairs))
    for j, p in enumerate(pairs):
        groups[label(p.category, p.attribute)][j] = True
    per_attr = {}
    for name, (summary, f1s) in _breakdown(pairs, n, groups, w).items():
        mine = [p for p, keep in zip(pairs, groups[name], strict=True) if keep]
        per_attr[name] = {
            "category": mine[0].category if given else None, "attribute": mine[0].attribute,
            "pairs": len(mine), "with_gold": sum(p.gold for p in mine), **summary,
            "f1_ci95": _ci(f1s) if len(f1s) else None,
        }
    out["per_attribute"] = per_attr

    if any(r.get("gold_attributes_extracted") is not None for r in records):
        ext_pairs = pairs_of(records, extracted=True)
        ext = _matrix(ext_pairs, n)
        out["extracted"] = {**_summary(ext.sum(axis=0)),
                            "ci95": ({"f1": _ci(_f1_rows(w @ ext))} if n_boot else {})}
    else:
        out["extracted"] = None
    # a solver that never names a category (the dictionary baseline) has no accuracy
    chooses = any(r.get("category") is not None for r in records if not r.get("category_given"))
    flags = [c for c in (_category_correct(r) for r in records) if c is not None] if chooses else []
    out["category_accuracy"] = round(100.0 * sum(flags) / len(flags), 3) if flags else None
    out["off_schema_values"] = int(sum(int(r.get("off_schema") or 0) for r in records))
    out["values_per_offer"] = round(float(np.mean([int(r.get("n_values") or 0) for r in records])), 3)
    out["needs_review_rate"] = round(float(np.mean([bool(r.get("needs_review")) for r in records])), 4)
    latency = np.array([float(r.get("latency_ms") or 0.0) for r in records])
    out["latency_ms"] = {"p50": round(float(np.percentile(latency, 50)), 3),
                         "p95": round(float(np.percentile(latency, 95)), 3),
                         "mean": round(float(latency.mean()), 3)}
    out["bootstrap"] = {"resamples": n_boot, "seed": seed}
    return out


def attribute_paired_difference(
    base: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]], *, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """``new`` minus ``base`` (P, R, F1 points) on the same offers, with paired bootstrap 95%
    CIs (both scored on the same resamples of offers), and the (offer, attribute) outcomes
    the new run fixed (wrong → NN/VC) and broke. Raises ValueError for other offers."""
    if [r.get("id") for r in base] != [r.get("id") for r in new]:
        raise ValueError("paired comparison needs the same offers in the same order")
    if not base:
        raise ValueError("no predictions to compare")
    n = len(base)
    pa, pb = pairs_of(base), pairs_of(new)
    ma, mb = _matrix(pa, n), _matrix(pb, n)
    point_a, point_b = prf(ma.sum(axis=0)), prf(mb.sum(axis=0))
    out: dict[str, Any] = {"n": n}
    oa = {(p.offer, p.attribute): p.outcome for p in pa}
    ob = {(p.offer, p.attribute): p.outcome for p in pb}
    both = oa.keys() & ob.keys()
    out["fixed"] = sum(1 for k in both if oa[k] not in CORRECT and ob[k] in CORRECT)
    out["broken"] = sum(1 for k in both if oa[k] in CORRECT and ob[k] not in CORRECT)
    w = _weights(n, n_boot, seed)
    boot_a = np.array([prf(c) for c in w @ ma]) if n_boot else None
    boot_b = np.array([prf(c) for c in w @ mb]) if n_boot else None
    for i, key in enumerate(("precision", "recall", "f1")):
        out[key] = round(point_b[i] - point_a[i], 3)
        if boot_a is not None and boot_b is not None:
            out[f"{key}_ci95"] = _ci(boot_b[:, i] - boot_a[:, i])
    return out
