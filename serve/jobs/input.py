"""A job's input: JSONL, one ``{"custom_id": "…", "product": {…}}`` per line, checked whole.

The whole upload is validated before the job is accepted, so a job never stops halfway on
a bad line: the client gets every problem (up to :data:`MAX_PROBLEMS`) with its line number.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from agent.contract import Product

MAX_PROBLEMS = 20


def _check_custom_id(value: str) -> str:
    if not value.strip():
        raise ValueError("custom_id must not be blank")
    if any(unicodedata.category(ch) in {"Cc", "Cf"} for ch in value):
        raise ValueError("custom_id must not contain control or format characters")
    return value


CustomId = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_check_custom_id)]


class JobItem(BaseModel):
    """One line of a job's input."""

    model_config = ConfigDict(extra="forbid")
    custom_id: CustomId = Field(description="your id for this line; each result carries it")
    product: Product


@dataclass(frozen=True)
class Problem:
    line: int
    loc: tuple[str | int, ...]
    message: str


class JobInputError(ValueError):
    def __init__(self, message: str, problems: list[Problem], code: str = "invalid_job_input") -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems
        self.code = code


def parse_job_input(data: bytes, *, max_items: int) -> list[JobItem]:
    """Every line as a :class:`JobItem`; raises :class:`JobInputError` listing the problems
    (invalid UTF-8 or JSON, invalid fields, duplicate custom_id, too many or no lines)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JobInputError(f"the body is not UTF-8 (byte {exc.start})", []) from exc
    items: list[JobItem] = []
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    count = 0
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        count += 1
        if count > max_items:
            raise JobInputError(
                f"a job holds at most {max_items} lines (limits.max_job_items); split the input",
                [], "batch_too_large",
            )
        if len(problems) >= MAX_PROBLEMS:
            continue  # keep counting lines for the size check, stop collecting problems
        try:
            item = JobItem.model_validate(json.loads(line))
        except json.JSONDecodeError as exc:
            problems.append(Problem(lineno, (), f"invalid JSON: {exc.msg}"))
            continue
        except ValidationError as exc:
            for err in exc.errors()[:3]:
                loc = tuple(p if isinstance(p, int) else str(p) for p in err["loc"])
                problems.append(Problem(lineno, loc, err["msg"]))
            continue
        if item.custom_id in first_line:
            problems.append(Problem(
                lineno, ("custom_id",),
                f"duplicate custom_id {item.custom_id!r} (first on line {first_line[item.custom_id]})",
            ))
            continue
        first_line[item.custom_id] = lineno
        items.append(item)
    if problems:
        raise JobInputError(
            f"{len(problems)}{'+' if len(problems) >= MAX_PROBLEMS else ''} invalid line(s); "
            f"first on line {problems[0].line}: {problems[0].message}",
            problems,
        )
    if not items:
        raise JobInputError('the job has no lines: send JSONL, one {"custom_id", "product"} per line', [])
    return items
