"""One line of a run's ``predictions.jsonl``: the unit every metric, report and gate reads.

The runner writes these records (without ``latency_ms``: timings live in ``timings.jsonl``
so that predictions stay byte-identical across runs) and :func:`read_predictions` reads
them back, merging the timings in. Reading validates every line and names the bad ones,
because a metric computed from a silently skipped or misread record is a wrong number.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_ERRORS_SHOWN = 10
#: confidences computed in floating point may overshoot [0, 1] by rounding; more is a bug
CONFIDENCE_SLACK = 1e-6


class AttributePair(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    attribute: str = Field(min_length=1)
    value: str

    @field_validator("attribute", "value", mode="before")
    @classmethod
    def _scalar_to_text(cls, value: Any) -> Any:
        # datasets write numeric values as numbers ({"value": 128}); they compare as text
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


class PredictionRecord(BaseModel):
    """``gold_tags``/``pred_tags`` are node ids, a path root first for hierarchical labels
    (``pred_tags`` is the path of the predicted leaf, empty when nothing was returned)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(min_length=1)
    title: str | None = None
    gold_tags: list[str] = Field(min_length=1)
    pred_tags: list[str]
    confidence: float | None = None  # of the top tag; None when nothing was returned
    needs_review: bool = False
    off_taxonomy: int = Field(default=0, ge=0)  # returned tags outside the taxonomy
    latency_ms: float = Field(default=0.0, ge=0.0, allow_inf_nan=False)
    llm_tokens: int = Field(default=0, ge=0)  # prompt + completion
    fallback_used: bool = False
    gold_attributes: list[AttributePair] | None = None
    pred_attributes: list[AttributePair] | None = None
    result: dict[str, Any] | None = None  # the output contract, for inspection

    @field_validator("confidence")
    @classmethod
    def _confidence_in_unit_interval(cls, value: float | None) -> float | None:
        if value is None:
            return None
        if not -CONFIDENCE_SLACK <= value <= 1.0 + CONFIDENCE_SLACK:  # also rejects NaN
            raise ValueError(f"confidence must be within [0, 1], got {value}")
        return min(max(value, 0.0), 1.0)

    @property
    def display_title(self) -> str:
        """The product title from the record, else from the stored result, else ''."""
        if self.title:
            return self.title
        title = (self.result or {}).get("title")
        return title if isinstance(title, str) else ""


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "record"
    return f"{where}: {first['msg']}"


def as_records(records: Sequence[PredictionRecord | Mapping[str, Any]]) -> list[PredictionRecord]:
    """Validate in-memory records (dicts or models); raises ValueError naming the bad ones."""
    out: list[PredictionRecord] = []
    errors: list[str] = []
    for i, rec in enumerate(records):
        if isinstance(rec, PredictionRecord):
            out.append(rec)
            continue
        try:
            out.append(PredictionRecord.model_validate(rec))
        except ValidationError as exc:
            errors.append(f"record {i} ({rec.get('id', '?')!r}): {_describe(exc)}")
    if errors:
        raise ValueError(_summarise("invalid prediction records", errors))
    return out


def error_list(errors: Sequence[str]) -> str:
    """The first :data:`MAX_ERRORS_SHOWN` of ``errors``, one an indented line, and how many
    more there are: what every "bad lines" message of the evals lists."""
    shown = "\n  ".join(errors[:MAX_ERRORS_SHOWN])
    more = f"\n  … and {len(errors) - MAX_ERRORS_SHOWN} more" if len(errors) > MAX_ERRORS_SHOWN else ""
    return f"\n  {shown}{more}"


def _summarise(what: str, errors: Sequence[str]) -> str:
    return f"{what}: {len(errors)} bad:{error_list(errors)}"


def read_timings(path: Path) -> dict[str, float]:
    """``timings.jsonl``: item id → latency in ms (the last line of an id wins)."""
    out: dict[str, float] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                out[str(row["id"])] = float(row["latency_ms"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}: line {lineno} is not a timing record ({exc})") from exc
    return out


def read_predictions(path: Path, timings: Path | None = None) -> list[PredictionRecord]:
    """Every record of ``predictions.jsonl``, with ``latency_ms`` taken from ``timings``
    (a ``timings.jsonl``) when given and present; raises ValueError naming bad lines."""
    latency = read_timings(timings) if timings is not None and timings.exists() else {}
    out: list[PredictionRecord] = []
    errors: list[str] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                if not isinstance(raw, dict):
                    raise ValueError("not a JSON object")
                if raw.get("id") in latency:
                    raw["latency_ms"] = latency[raw["id"]]
                out.append(PredictionRecord.model_validate(raw))
            except ValidationError as exc:
                errors.append(f"line {lineno}: {_describe(exc)}")
            except ValueError as exc:  # JSONDecodeError included: e.g. a torn last line
                errors.append(f"line {lineno}: {exc}")
    if errors:
        raise ValueError(_summarise(str(path), errors))
    return out
