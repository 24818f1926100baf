"""Markdown documents: one chunk per heading section, the heading path as the section.

The heading line stays in its section's chunk; headings inside code fences are ignored. A
section too long is cut at blank-line blocks (a fenced block stays whole), then sentences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from indexing.chunking.budget import _TokenBudget
from indexing.chunking.cutting import _fit, _Level
from indexing.chunking.paragraphs import _PROSE_LEVELS
from indexing.chunking.spans import SECTION_SEPARATOR, _is_blank, _Line, _lines, _Piece

_ATX_HEADING = re.compile(r" {0,3}(?P<marks>#{1,6})(?:[ \t]+(?P<title>.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT_UNDERLINE = re.compile(r" {0,3}(?P<bar>={2,}|-{2,})[ \t]*$")
_FENCE_OPEN = re.compile(r" {0,3}(?P<fence>`{3,}|~{3,})")
_FENCE_CLOSE = re.compile(r" {0,3}(?P<fence>`{3,}|~{3,})[ \t]*$")
# Lines that cannot be the title of a setext heading (lists, quotes, tables, HTML).
_NOT_PLAIN_LINE = re.compile(r"[ \t]*(?:[-*+>|<]|\d{1,9}[.)])")


@dataclass(frozen=True, slots=True)
class _Fence:
    char: str
    length: int

    @classmethod
    def opened_by(cls, text: str, line: _Line) -> _Fence | None:
        match = _FENCE_OPEN.match(text, line.start, line.end)
        if match is None:
            return None
        return cls(match["fence"][0], len(match["fence"]))

    def is_closed_by(self, text: str, line: _Line) -> bool:
        match = _FENCE_CLOSE.match(text, line.start, line.end)
        return (
            match is not None
            and match["fence"][0] == self.char
            and len(match["fence"]) >= self.length
        )


class _Heading(NamedTuple):
    start: int
    level: int
    title: str


class _Block(NamedTuple):
    start: int
    end: int
    section: str


def _markdown_block_starts(text: str, start: int, end: int) -> list[int]:
    """Like paragraphs, but a fenced code block with blank lines inside stays one block."""
    starts = []
    fence: _Fence | None = None
    seen_text = after_blank = False
    for line in _lines(text, start, end):
        if fence is not None:
            if fence.is_closed_by(text, line):
                fence = None
            continue
        if _is_blank(text, line.start, line.end):
            after_blank = seen_text
            continue
        if after_blank and line.start > start:
            starts.append(line.start)
        seen_text, after_blank = True, False
        fence = _Fence.opened_by(text, line)
    return starts


_MARKDOWN_LEVELS: tuple[_Level, ...] = (
    _Level(_markdown_block_starts, overlap=False),
    *_PROSE_LEVELS,
)


def _markdown_headings(text: str) -> list[_Heading]:
    """ATX headings, and setext headings whose title is a one-line paragraph, outside fences."""
    headings = []
    fence: _Fence | None = None
    title_candidate: _Line | None = None  # a plain line right after a blank line
    after_blank = True
    for line in _lines(text, 0, len(text)):
        if fence is not None:
            if fence.is_closed_by(text, line):
                fence = None
            continue
        fence = _Fence.opened_by(text, line)
        atx = None if fence else _ATX_HEADING.match(text, line.start, line.end)
        setext = None
        if title_candidate is not None and not (fence or atx):
            setext = _SETEXT_UNDERLINE.match(text, line.start, line.end)
        if atx:
            headings.append(_Heading(line.start, len(atx["marks"]), (atx["title"] or "").strip()))
        elif setext and title_candidate is not None:
            level = 1 if setext["bar"][0] == "=" else 2
            title = text[title_candidate.start : title_candidate.end].strip()
            headings.append(_Heading(title_candidate.start, level, title))
        blank = _is_blank(text, line.start, line.end)
        plain = not (
            blank or fence or atx or setext or _NOT_PLAIN_LINE.match(text, line.start, line.end)
        )
        title_candidate = line if plain and after_blank else None
        after_blank = blank
    return headings


def _markdown_sections(text: str) -> list[_Block]:
    """Heading-to-heading blocks; the section is the path of enclosing heading titles."""
    blocks = []
    path: list[tuple[int, str]] = []
    start, section = 0, ""
    for heading in _markdown_headings(text):
        blocks.append(_Block(start, heading.start, section))
        while path and path[-1][0] >= heading.level:
            path.pop()
        path.append((heading.level, heading.title))
        start = heading.start
        section = SECTION_SEPARATOR.join(title for _, title in path if title)
    blocks.append(_Block(start, len(text), section))
    return blocks


def _chunk_markdown(budget: _TokenBudget) -> list[_Piece]:
    pieces = []
    for block in _markdown_sections(budget.text):
        for start, end in _fit(budget, block.start, block.end, _MARKDOWN_LEVELS):
            pieces.append(_Piece(start, end, block.section))
    return pieces


def _looks_like_markdown(text: str) -> bool:
    headings = _markdown_headings(text)
    if len(headings) >= 2:
        return True
    if not headings:
        return False
    first_text = len(text) - len(text.lstrip())
    first_line_start = max(text.rfind("\n", 0, first_text), text.rfind("\r", 0, first_text)) + 1
    return headings[0].start == first_line_start
