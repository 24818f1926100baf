"""Paragraph documents, and the paragraph, line, sentence and word boundaries all shapes use.

Blank-line separated paragraphs, short neighbours merged up to half the token limit (never
across a page), long ones cut at sentences, then lines, then words.
"""

from __future__ import annotations

import re

from indexing.chunking.budget import _TokenBudget
from indexing.chunking.cutting import _WHITESPACE, _fit, _group_units, _Level
from indexing.chunking.spans import _is_blank, _lines, _PageMap, _Piece, _strip_span

# --------------------------------------------------------------------------------------------
# Boundary finders for paragraphs and running text (each returns positions strictly inside
# (start, end), ascending); markdown and law documents add their own
# --------------------------------------------------------------------------------------------


def _paragraph_starts(text: str, start: int, end: int) -> list[int]:
    """Starts of paragraphs that follow a blank line."""
    starts = []
    seen_text = after_blank = False
    for line in _lines(text, start, end):
        if _is_blank(text, line.start, line.end):
            after_blank = seen_text
            continue
        if after_blank and line.start > start:
            starts.append(line.start)
        seen_text, after_blank = True, False
    return starts


def _line_starts(text: str, start: int, end: int) -> list[int]:
    return [line.start for line in _lines(text, start, end) if line.start > start]


# A full stop, question or exclamation mark, optional closing quotes or brackets, then
# whitespace: Korean "…다. " / "…요. " and English ". ". CJK full-width marks need no space.
_SENTENCE_END = re.compile(r"[.?!…][\"'”’)\]」』》]*\s+|[。？！][\"'”’)\]」』》]*\s*")
# "1. ", "가. ", "a. " at a line start are list markers, not the end of a sentence.
_LIST_MARKER = re.compile(r"[ \t]*(?:\d{1,3}|[A-Za-z]|[가나다라마바사아자차카타파하])\.")


def _sentence_starts(text: str, start: int, end: int) -> list[int]:
    return [
        match.end()
        for match in _SENTENCE_END.finditer(text, start, end)
        if match.end() < end and not _ends_list_marker(text, start, match.start() + 1)
    ]


def _ends_list_marker(text: str, start: int, dot_end: int) -> bool:
    # A marker is a few characters long, so only a short look-back is needed (and a long
    # look-back per sentence would make a huge single-line paragraph quadratic).
    window = max(start, dot_end - 8)
    newline = text.rfind("\n", window, dot_end)
    if newline >= 0:
        line_start = newline + 1
    elif window == start:
        line_start = start
    else:
        return False
    return _LIST_MARKER.fullmatch(text, line_start, dot_end) is not None


def _word_starts(text: str, start: int, end: int) -> list[int]:
    return [m.end() for m in _WHITESPACE.finditer(text, start, end) if start < m.end() < end]


# --------------------------------------------------------------------------------------------
# Paragraph documents
# --------------------------------------------------------------------------------------------

# Cuts inside running text, coarsest first.
_PROSE_LEVELS: tuple[_Level, ...] = (
    _Level(_sentence_starts, overlap=True),
    _Level(_line_starts, overlap=True),
    _Level(_word_starts, overlap=True),
)


def _chunk_paragraphs(budget: _TokenBudget, pages: _PageMap) -> list[_Piece]:
    """Merge short paragraphs up to half the limit (so chunks are neither tiny nor mixing
    too many topics), keep each chunk on one page, and cut long paragraphs at sentences."""
    text = budget.text
    bounds = [0, *_paragraph_starts(text, 0, len(text)), len(text)]
    target = max(budget.overhead + 1, budget.max_tokens // 2)
    pieces = []
    for run in _split_bounds_at_pages(text, bounds, pages):
        for i, j in _group_units(budget, run, target):
            for start, end in _fit(budget, run[i], run[j], _PROSE_LEVELS):
                pieces.append(_Piece(start, end, ""))
    return pieces


def _split_bounds_at_pages(text: str, bounds: list[int], pages: _PageMap) -> list[list[int]]:
    """Split unit bounds into runs whose units all start on the same page."""
    runs = [[bounds[0]]]
    current_page = pages.page_of(_strip_span(text, bounds[0], bounds[1])[0])
    for k in range(1, len(bounds) - 1):
        page = pages.page_of(_strip_span(text, bounds[k], bounds[k + 1])[0])
        runs[-1].append(bounds[k])
        if page != current_page:
            runs.append([bounds[k]])
            current_page = page
    runs[-1].append(bounds[-1])
    return runs
