"""One job upload as it streams in: checked line by line, hashed and staged on disk.

Memory is one chunk plus one line plus the custom_ids seen, whatever the upload's size:
nothing holds the body or the list of its items. The caller feeds the chunks as they
arrive and stops at the first :class:`~serve.jobs.input.JobInputError` (the rest of the
upload is never read), then discards the upload, or finishes it and commits it
(:meth:`~serve.jobs.store.JobStore.commit`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence

from agent.contract import AttributeSelection
from serve.jobs.input import JobInputParser, JobItem
from serve.jobs.store import JobStore, StagedJob


def fingerprint(
    body_sha256: str, attributes: AttributeSelection | None, review: bool | None = None, crosswalk: str | None = None,
) -> str:
    """What an Idempotency-Key retry must repeat: the body, and the job's ``?attributes=``,
    ``?review=`` and ``?crosswalk=`` (a job without them keeps the body's SHA-256, as before the
    options existed)."""
    if attributes is None and review is None and crosswalk is None:
        return body_sha256
    given: dict[str, object] = {"attributes": attributes} if attributes is not None else {}
    if review is not None:
        given["review"] = review
    if crosswalk is not None:
        given["crosswalk"] = crosswalk
    options = json.dumps(given, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(f"{body_sha256}\n{options}".encode()).hexdigest()


class JobUpload:
    def __init__(
        self, store: JobStore, *, max_items: int, max_line_bytes: int, max_depth: int,
        attributes: AttributeSelection | None = None,
        check_attributes: Callable[[AttributeSelection], str | None] | None = None,
        review: bool | None = None,
        crosswalk: str | None = None,
        check_crosswalk: Callable[[str], str | None] | None = None,
    ) -> None:
        """``attributes``, ``crosswalk``: the job's options, staged on every line that does not
        give its own; ``review``: the job's ``?review=`` (part of its fingerprint)."""
        self._parser = JobInputParser(
            max_items=max_items, max_line_bytes=max_line_bytes, max_depth=max_depth,
            check_attributes=check_attributes, check_crosswalk=check_crosswalk,
        )
        self._crosswalk = crosswalk
        self._sha256 = hashlib.sha256()  # of the body as sent: the idempotency fingerprint
        self._attributes = attributes
        self._review = review
        self.staged: StagedJob = store.stage()

    def _with_default(self, items: Sequence[JobItem]) -> Sequence[JobItem]:
        default, crosswalk = self._attributes, self._crosswalk
        if default is not None:
            items = [i if i.attributes is not None else i.model_copy(update={"attributes": default}) for i in items]
        if crosswalk is not None:
            items = [i if i.crosswalk is not None else i.model_copy(update={"crosswalk": crosswalk}) for i in items]
        return items

    def feed(self, chunk: bytes) -> None:
        """Check (and stage) the lines ``chunk`` completes; raises JobInputError to stop."""
        self._sha256.update(chunk)
        self.staged.write(self._with_default(self._parser.feed(chunk)))

    def finish(self) -> str:
        """Check the last line, make the staged input durable; the fingerprint of the body
        (its SHA-256, hex) and the job's options (:func:`fingerprint`).
        Raises JobInputError for the problems found on the way."""
        self.staged.write(self._with_default(self._parser.finish()))
        self.staged.seal()
        return fingerprint(self._sha256.hexdigest(), self._attributes, self._review, self._crosswalk)

    def discard(self) -> None:
        self.staged.discard()
