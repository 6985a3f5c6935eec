"""A job's input: JSONL, one ``{"custom_id": "…", "product": {…}}`` per line (optionally with
``"attributes"``: on, off or attribute ids / names for that line), checked line by line.

The upload is validated as it streams in (:class:`JobInputParser`), and a job is accepted
only when every line is valid, so a job never stops halfway on a bad line: the client gets
the problems (up to :data:`MAX_PROBLEMS`) with their line numbers. Reading stops at the
first :data:`MAX_PROBLEMS` problems, at a line past ``max_items`` or at a line longer than
``max_line_bytes``: the rest of the upload would not change the answer.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, NoReturn

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from agent.contract import AttributeSelection, Product
from serve.attribute_selection import SelectionField, parse_selection
from serve.jsonlimits import JsonTooDeep, loads
from taxonomy.crosswalk import StoreName

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
    attributes: SelectionField | None = Field(
        default=None,
        description="which attributes to tag for this line: on, off or attribute ids / names "
        "(default: the job's `?attributes=`, else the server's tagging.attributes)",
    )
    crosswalk: StoreName | None = Field(
        default=None,
        description="also give the top tag through this stored crosswalk (default: the job's `?crosswalk=`)",
    )

    @property
    def selection(self) -> AttributeSelection | None:
        return None if self.attributes is None else parse_selection(
            [self.attributes] if isinstance(self.attributes, str) else self.attributes
        )


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


class JobInputParser:
    """Checks JSONL as it arrives: :meth:`feed` chunks split anywhere, then :meth:`finish`.

    Memory is one chunk plus one line plus the set of custom_ids seen (for duplicates).
    Both raise :class:`JobInputError` to stop reading; :meth:`finish` also raises it for the
    problems collected on the way, or when there was no line at all."""

    def __init__(
        self, *, max_items: int, max_line_bytes: int, max_depth: int,
        check_attributes: Callable[[AttributeSelection], str | None] | None = None,
        check_crosswalk: Callable[[str], str | None] | None = None,
    ) -> None:
        """``check_attributes``: why a line's attribute selection cannot be served (None: fine)."""
        self.check_attributes = check_attributes
        self.check_crosswalk = check_crosswalk
        self.max_items = max_items
        self.max_line_bytes = max_line_bytes
        self.max_depth = max_depth
        self.count = 0  # non-blank lines
        self.problems: list[Problem] = []
        self._first_line: dict[str, int] = {}
        self._lineno = 0
        self._pending = bytearray()  # the line being received, without its newline

    def feed(self, chunk: bytes) -> list[JobItem]:
        """The items of the lines that ``chunk`` completes (none once a problem is found:
        the job will be refused, its items are not needed)."""
        items: list[JobItem] = []
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if self._pending:
                self._pending += chunk[start:end]
                self._line(bytes(self._pending), items)
                self._pending.clear()
            else:
                self._line(chunk[start:end], items)
            start = end + 1
        self._pending += chunk[start:]
        if len(self._pending) > self.max_line_bytes:
            self._too_long(self._lineno + 1)
        return items

    def finish(self) -> list[JobItem]:
        """The items of a last line without a newline; raises for any problem collected."""
        items: list[JobItem] = []
        if self._pending:
            self._line(bytes(self._pending), items)
            self._pending.clear()
        if self.problems:
            raise self._error()
        if not self.count:
            raise JobInputError('the job has no lines: send JSONL, one {"custom_id", "product"} per line', [])
        return items

    def _line(self, line: bytes, items: list[JobItem]) -> None:
        self._lineno += 1
        if len(line) > self.max_line_bytes:
            self._too_long(self._lineno)
        if not line.strip():
            return
        self.count += 1
        if self.count > self.max_items:
            raise JobInputError(
                f"a job holds at most {self.max_items} lines (limits.max_job_items); split the input",
                [], "batch_too_large",
            )
        item = self._item(line)
        if item is None:
            if len(self.problems) >= MAX_PROBLEMS:
                raise self._error()  # enough to act on: stop reading
            return
        first = self._first_line.setdefault(item.custom_id, self._lineno)
        if first != self._lineno:
            self._problem(Problem(
                self._lineno, ("custom_id",), f"duplicate custom_id {item.custom_id!r} (first on line {first})",
            ))
        elif not self.problems:
            items.append(item)

    def _item(self, line: bytes) -> JobItem | None:
        """The line's item, or None after recording its problem(s)."""
        lineno = self._lineno
        try:
            item = JobItem.model_validate(loads(line, max_depth=self.max_depth))
            selection = item.selection
            problem = self.check_attributes(selection) if selection is not None and self.check_attributes else None
            if problem is not None:
                self.problems.append(Problem(lineno, ("attributes",), problem))
                return None
            if item.crosswalk is not None and self.check_crosswalk is not None:
                problem = self.check_crosswalk(item.crosswalk)
                if problem is not None:
                    self.problems.append(Problem(lineno, ("crosswalk",), problem))
                    return None
            return item
        except UnicodeDecodeError as exc:
            self.problems.append(Problem(lineno, (), f"the line is not UTF-8 (byte {exc.start + 1})"))
        except JsonTooDeep as exc:
            self.problems.append(Problem(lineno, (), f"invalid JSON: {exc}"))
        except json.JSONDecodeError as exc:
            self.problems.append(Problem(lineno, (), f"invalid JSON: {exc.msg}"))
        except ValidationError as exc:
            for err in exc.errors()[:3]:
                loc = tuple(p if isinstance(p, int) else str(p) for p in err["loc"])
                self.problems.append(Problem(lineno, loc, err["msg"]))
        return None

    def _problem(self, problem: Problem) -> None:
        self.problems.append(problem)
        if len(self.problems) >= MAX_PROBLEMS:
            raise self._error()

    def _too_long(self, lineno: int) -> NoReturn:
        # as long as a whole JSON request may be: a product line has no reason to be longer
        self.problems.append(Problem(
            lineno, (), f"line longer than {self.max_line_bytes} bytes (limits.max_body_bytes)"
        ))
        raise self._error()

    def _error(self) -> JobInputError:
        problems = self.problems[:MAX_PROBLEMS]
        more = "+" if len(self.problems) >= MAX_PROBLEMS else ""
        return JobInputError(
            f"{len(problems)}{more} invalid line(s); first on line {problems[0].line}: {problems[0].message}",
            problems,
        )

