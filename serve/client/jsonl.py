"""JSONL answers (job results) split into lines on ``\\n`` alone.

httpx's ``iter_lines()`` splits as ``str.splitlines()`` does: also on U+2028, U+2029 and
U+0085, which JSON leaves raw inside strings (the service writes UTF-8, not ``\\u``
escapes). A result whose product text or custom_id holds one would arrive as two broken
lines."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator


class LineSplitter:
    """Bytes in chunks split anywhere; out the complete lines (without their ``\\n``)."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        return lines

    def finish(self) -> list[bytes]:
        """A last line without its newline, if any."""
        rest, self._pending = self._pending, b""
        return [rest] if rest else []


def lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    splitter = LineSplitter()
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.finish()


async def alines(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    splitter = LineSplitter()
    async for chunk in chunks:
        for line in splitter.feed(chunk):
            yield line
    for line in splitter.finish():
        yield line
