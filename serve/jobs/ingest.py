"""One job upload as it streams in: checked line by line, hashed and staged on disk.

Memory is one chunk plus one line plus the custom_ids seen, whatever the upload's size:
nothing holds the body or the list of its items. The caller feeds the chunks as they
arrive and stops at the first :class:`~serve.jobs.input.JobInputError` (the rest of the
upload is never read), then discards the upload, or finishes it and commits it
(:meth:`~serve.jobs.store.JobStore.commit`).
"""

from __future__ import annotations

import hashlib

from serve.jobs.input import JobInputParser
from serve.jobs.store import JobStore, StagedJob


class JobUpload:
    def __init__(self, store: JobStore, *, max_items: int, max_line_bytes: int, max_depth: int) -> None:
        self._parser = JobInputParser(max_items=max_items, max_line_bytes=max_line_bytes, max_depth=max_depth)
        self._sha256 = hashlib.sha256()  # of the body as sent: the idempotency fingerprint
        self.staged: StagedJob = store.stage()

    def feed(self, chunk: bytes) -> None:
        """Check (and stage) the lines ``chunk`` completes; raises JobInputError to stop."""
        self._sha256.update(chunk)
        self.staged.write(self._parser.feed(chunk))

    def finish(self) -> str:
        """Check the last line, make the staged input durable; the body's SHA-256 (hex).
        Raises JobInputError for the problems found on the way."""
        self.staged.write(self._parser.finish())
        self.staged.seal()
        return self._sha256.hexdigest()

    def discard(self) -> None:
        self.staged.discard()
