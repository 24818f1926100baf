"""The `Chunk` type and the span helpers every chunker shares: lines, trimming, pages.

Every chunk is a verbatim span of the source, so chunkers work on (start, end) offsets into one
text and only `_to_chunks` slices it.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

ChunkKind = Literal["auto", "law", "markdown", "paragraph"]
DocumentKind = Literal["law", "markdown", "paragraph"]
TokenCounter = Callable[[str], int]
Span = tuple[int, int]

SECTION_SEPARATOR = " > "


@dataclass(frozen=True, slots=True)
class Chunk:
    """One citeable piece of a document."""

    text: str  # exactly source[char_start:char_end]
    char_start: int
    char_end: int
    section: str  # e.g. "제3장 총칙 > 제12조(목적) > ②", "Install > Linux", or ""
    page: int | None  # 1-based page of char_start when page_starts was given


class _Piece(NamedTuple):
    start: int
    end: int
    section: str


class _Line(NamedTuple):
    start: int
    end: int  # before the line break
    next: int  # start of the following line


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _lines(text: str, start: int, end: int) -> Iterator[_Line]:
    """Lines of text[start:end]; `\\r\\n`, `\\r` and `\\n` all end a line."""
    pos = start
    for match in _LINE_BREAK.finditer(text, start, end):
        yield _Line(pos, match.start(), match.end())
        pos = match.end()
    if pos < end:
        yield _Line(pos, end, end)


def _strip_span(text: str, start: int, end: int) -> Span:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _is_blank(text: str, start: int, end: int) -> bool:
    start, end = _strip_span(text, start, end)
    return start == end


class _PageMap:
    def __init__(self, page_starts: Sequence[int] | None) -> None:
        self._starts = list(page_starts) if page_starts else None

    def page_of(self, pos: int) -> int | None:
        if self._starts is None:
            return None
        # Text before the first recorded page start still belongs to page 1.
        return max(1, bisect_right(self._starts, pos))


def _to_chunks(text: str, pieces: list[_Piece], pages: _PageMap) -> list[Chunk]:
    chunks = []
    for piece in pieces:
        start, end = _strip_span(text, piece.start, piece.end)
        if start < end:
            chunks.append(Chunk(text[start:end], start, end, piece.section, pages.page_of(start)))
    return chunks
