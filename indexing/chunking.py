"""Structure-aware chunking: cut a document into citeable spans that fit the embedder.

Three document shapes are recognised (see `detect_kind`):

- **law**: Korean laws and internal regulations. One article (조) per chunk, its 항/호/목 kept
  inside; 편/장/절/관 and 부칙 headings become the section path rather than chunks of their own.
  An article too long for the embedder is cut at 항, then 호, 목, sentences, lines and words.
- **markdown**: one chunk per heading section (the heading line included); headings inside
  code fences are ignored. A section too long is cut at blank-line blocks, then sentences.
- **paragraph**: blank-line separated paragraphs, short neighbours merged up to half the token
  limit (never across a page), long ones cut at sentences.

Every chunk is a verbatim span of the source (`text == source[char_start:char_end]`): whitespace
is trimmed by moving the span, so citations can point back into the original document. Every
chunk satisfies `count_tokens(chunk.text) <= max_tokens`; an embedder that silently truncates or
averages windows would otherwise lose text.

Tokenizer calls dominate the cost, so the text is tokenised about twice in all: every unit
(article, paragraph, sentence) is counted once, and a chunk made of several units is verified
with one real count of its text (a binary search only runs when the summed estimate was wrong).
Nothing is ever counted repeatedly while growing a chunk, which would be quadratic.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal, NamedTuple

__all__ = ["SECTION_SEPARATOR", "Chunk", "ChunkKind", "DocumentKind", "chunk_text", "detect_kind"]

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


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def detect_kind(text: str) -> DocumentKind:
    """Guess the document shape from its lines.

    Law wins over markdown: a regulation pasted into markdown is still best cut per article.
    Two article lines (or one plus a 편/장/절/부칙 heading) are needed so that a stray
    "제3조 ..." line in prose does not turn a report into a law.
    """
    if _looks_like_law(text):
        return "law"
    if _looks_like_markdown(text):
        return "markdown"
    return "paragraph"


def chunk_text(
    text: str,
    *,
    kind: ChunkKind = "auto",
    count_tokens: TokenCounter,
    max_tokens: int = 480,
    overlap_tokens: int = 48,
    page_starts: Sequence[int] | None = None,
) -> list[Chunk]:
    """Split `text` into chunks in document order, each within `max_tokens`.

    `count_tokens` must be the embedder's own counter (specials included); every chunk is
    checked against it, never against a character estimate. `overlap_tokens` is only used
    where running text had to be cut inside a paragraph, 항 or block: the later piece then
    starts up to that many tokens earlier, so those two spans overlap (it is capped at half of
    what a chunk can hold). `page_starts` are the sorted character offsets where each page
    begins; `Chunk.page` is the page holding `char_start`.

    In laws, 편/장/절/관/부칙 heading lines are in no chunk's text, only in `Chunk.section`:
    prepend the section when the heading words should be searchable.
    """
    _check_arguments(kind, max_tokens, overlap_tokens, page_starts)
    if not text or text.isspace():
        return []
    budget = _TokenBudget(text, count_tokens, max_tokens, overlap_tokens)
    pages = _PageMap(page_starts)
    resolved = detect_kind(text) if kind == "auto" else kind
    if resolved == "law":
        pieces = _chunk_law(budget)
    elif resolved == "markdown":
        pieces = _chunk_markdown(budget)
    else:
        pieces = _chunk_paragraphs(budget, pages)
    return _to_chunks(text, pieces, pages)


def _check_arguments(
    kind: str, max_tokens: int, overlap_tokens: int, page_starts: Sequence[int] | None
) -> None:
    if kind not in ("auto", "law", "markdown", "paragraph"):
        raise ValueError(f"unknown chunk kind {kind!r}")
    if max_tokens <= 0:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    if overlap_tokens < 0:
        raise ValueError(f"overlap_tokens must not be negative, got {overlap_tokens}")
    if page_starts is not None and any(a > b for a, b in pairwise(page_starts)):
        raise ValueError("page_starts must be sorted")


# --------------------------------------------------------------------------------------------
# Spans, lines, pages
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Token budget
# --------------------------------------------------------------------------------------------

# No natural text averages more characters per token than this, so a longer span cannot fit:
# it is cut without first paying for a count of all of it.
_MAX_CHARS_PER_TOKEN = 32


class _TokenBudget:
    """Counts tokens of (whitespace-trimmed) spans of one document, each span at most once."""

    def __init__(
        self, text: str, count_tokens: TokenCounter, max_tokens: int, overlap_tokens: int
    ) -> None:
        self.text = text
        self.max_tokens = max_tokens
        self._count_tokens = count_tokens
        self._cache: dict[Span, int] = {}
        self.overhead = _per_text_overhead(count_tokens)
        if max_tokens <= self.overhead:
            raise ValueError(
                f"max_tokens={max_tokens} leaves no room: the tokenizer adds {self.overhead} "
                "tokens to any text"
            )
        # Overlap never takes more than half of a chunk, or cut text would barely advance.
        self.overlap_tokens = min(overlap_tokens, (max_tokens - self.overhead) // 2)

    def count(self, start: int, end: int) -> int:
        start, end = _strip_span(self.text, start, end)
        if start == end:
            return self.overhead
        key = (start, end)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self._count_tokens(self.text[start:end])
        return cached

    def content(self, start: int, end: int) -> int:
        """Tokens the span adds to a chunk, without the once-per-text specials."""
        return self.count(start, end) - self.overhead

    def fits(self, start: int, end: int, limit: int) -> bool:
        start, end = _strip_span(self.text, start, end)
        if end - start > _MAX_CHARS_PER_TOKEN * limit:
            return False
        return self.count(start, end) <= limit


def _per_text_overhead(count_tokens: TokenCounter) -> int:
    """Tokens the counter adds once per text (for e5: the "passage: " prefix, [CLS], [SEP]).

    Estimates add unit counts, so this is subtracted from each unit and added back once. It is
    measured from one and two copies of a word, not from "", because some tokenizers give the
    empty string an extra token.
    """
    single = count_tokens("word")
    double = count_tokens("word word")
    return max(0, min(count_tokens(""), 2 * single - double))


# --------------------------------------------------------------------------------------------
# Generic cutting: levels of boundaries, greedy grouping, running text with overlap
# --------------------------------------------------------------------------------------------

BoundaryFinder = Callable[[str, int, int], list[int]]


@dataclass(frozen=True, slots=True)
class _Level:
    """One way to cut a span. `overlap` marks cuts that land inside running text, where the
    next piece needs some preceding context; cuts between 항/호/blocks do not."""

    boundaries: BoundaryFinder
    overlap: bool


def _fit(budget: _TokenBudget, start: int, end: int, levels: Sequence[_Level]) -> list[Span]:
    """Spans covering text[start:end], each within max_tokens, cut as coarsely as possible."""
    return _split_to_fit(budget, start, end, levels, budget.max_tokens)


def _split_to_fit(
    budget: _TokenBudget, start: int, end: int, levels: Sequence[_Level], limit: int
) -> list[Span]:
    if budget.fits(start, end, limit):
        return [(start, end)]
    depth, bounds = _first_cut(budget.text, start, end, levels)
    if depth == len(levels) or levels[depth].overlap:
        return _split_running_text(budget, start, end, levels[depth:], limit)
    finer = levels[depth + 1 :]
    pieces: list[Span] = []
    for i, j in _group_units(budget, bounds, limit):
        pieces.extend(_split_to_fit(budget, bounds[i], bounds[j], finer, limit))
    return pieces


def _first_cut(text: str, start: int, end: int, levels: Sequence[_Level]) -> tuple[int, list[int]]:
    """The first level that has a boundary inside the span, with the span's unit bounds."""
    for depth, level in enumerate(levels):
        inner = level.boundaries(text, start, end)
        if inner:
            return depth, [start, *inner, end]
    return len(levels), [start, end]


def _group_units(budget: _TokenBudget, bounds: list[int], limit: int) -> list[tuple[int, int]]:
    """Greedily group consecutive units (bounds[k]..bounds[k+1]) into runs within `limit`.

    Returns index pairs (i, j) meaning bounds[i]..bounds[j]. A unit over the limit is returned
    alone for the caller to cut finer.
    """
    groups = []
    units = len(bounds) - 1
    i = 0
    while i < units:
        if not budget.fits(bounds[i], bounds[i + 1], limit):
            groups.append((i, i + 1))
            i += 1
            continue
        estimated = _extend_by_estimate(
            budget, bounds, i, budget.count(bounds[i], bounds[i + 1]), limit
        )
        verified = _shrink_until_fits(budget, bounds, bounds[i], i, estimated, limit)
        j = i + 1 if verified is None else verified  # None only if the counter is erratic
        groups.append((i, j))
        i = j
    return groups


def _extend_by_estimate(
    budget: _TokenBudget, bounds: list[int], i: int, total: int, limit: int
) -> int:
    """Past unit i, add units while the summed estimate stays within the limit."""
    j = i + 1
    while j < len(bounds) - 1 and budget.fits(bounds[j], bounds[j + 1], limit):
        unit = budget.content(bounds[j], bounds[j + 1])
        if total + unit > limit:
            break
        total += unit
        j += 1
    return j


def _shrink_until_fits(
    budget: _TokenBudget, bounds: list[int], start: int, i: int, j: int, limit: int
) -> int | None:
    """Largest end index in (i, j] such that start..bounds[end] fits, or None.

    Token counts are not exactly additive (a unit edge can change how text is split), so an
    estimate is verified with one real count; only a wrong estimate costs a binary search.
    """
    if budget.fits(start, bounds[j], limit):
        return j
    good, bad = i, j
    while bad - good > 1:
        middle = (good + bad) // 2
        if budget.fits(start, bounds[middle], limit):
            good = middle
        else:
            bad = middle
    return good if good > i else None


def _split_running_text(
    budget: _TokenBudget, start: int, end: int, levels: Sequence[_Level], limit: int
) -> list[Span]:
    """Cut running text (sentences, lines, words) into pieces that overlap a little.

    The text is broken into atoms small enough to leave room for the overlap, each counted
    once; atoms are then packed greedily and every piece is verified with one real count.
    """
    text = budget.text
    bounds = _atoms(budget, start, end, levels, limit - budget.overlap_tokens)
    pieces: list[Span] = []
    previous: tuple[Span, Span] | None = None  # (piece, its text without the overlap)
    i = 0
    while i < len(bounds) - 1:
        lead = _overlap_start(budget, *previous) if previous and budget.overlap_tokens else None
        j = _pack_atoms(budget, bounds, i, lead, limit) if lead is not None else None
        if j is None:
            lead = None
            j = _pack_atoms(budget, bounds, i, None, limit)
        if j is None:  # only with a non-monotonic counter: atom i alone is known to fit
            j = i + 1
        if not _is_blank(text, bounds[i], bounds[j]):
            piece = (bounds[i] if lead is None else lead, bounds[j])
            pieces.append(piece)
            previous = (piece, (bounds[i], bounds[j]))
        i = j
    return pieces


def _pack_atoms(
    budget: _TokenBudget, bounds: list[int], i: int, lead: int | None, limit: int
) -> int | None:
    """End index of the piece that starts at atom i (preceded by the overlap `lead`)."""
    total = budget.count(bounds[i], bounds[i + 1])
    if lead is not None:
        total += budget.content(lead, bounds[i])
    j = _extend_by_estimate(budget, bounds, i, total, limit)
    start = bounds[i] if lead is None else lead
    return _shrink_until_fits(budget, bounds, start, i, j, limit)


def _atoms(
    budget: _TokenBudget, start: int, end: int, levels: Sequence[_Level], limit: int
) -> list[int]:
    """Bounds cutting text[start:end] into atoms within `limit`, at the coarsest level possible."""
    depth, bounds = _first_cut(budget.text, start, end, levels)
    if depth == len(levels):
        return _character_atoms(budget, start, end, limit)
    finer = levels[depth + 1 :]
    atoms = [start]
    for unit_start, unit_end in pairwise(bounds):
        if budget.fits(unit_start, unit_end, limit):
            atoms.append(unit_end)
        else:
            atoms.extend(_atoms(budget, unit_start, unit_end, finer, limit)[1:])
    return atoms


def _character_atoms(budget: _TokenBudget, start: int, end: int, limit: int) -> list[int]:
    """Last resort for text without any usable boundary (a long URL, a space-less run).

    Fixed-size blocks keep it to one count per character plus the pieces' verification; a
    block that is still too long (tiny limits) is bisected.
    """
    size = max(1, (limit - budget.overhead) // 4)
    atoms = [start]
    for block_start in range(start, end, size):
        block_end = min(end, block_start + size)
        if budget.fits(block_start, block_end, limit):
            atoms.append(block_end)
        else:
            atoms.extend(_character_cuts(budget, block_start, block_end, limit))
    return atoms


def _character_cuts(budget: _TokenBudget, start: int, end: int, limit: int) -> list[int]:
    cuts = []
    while start < end:
        start = _longest_fitting_prefix(budget, start, end, limit)
        cuts.append(start)
    return cuts


def _longest_fitting_prefix(budget: _TokenBudget, start: int, end: int, limit: int) -> int:
    """Largest cut in (start, end] whose prefix fits the limit, by bisection."""
    if budget.fits(start, end, limit):
        return end
    good, bad = start, end
    while bad - good > 1:
        middle = (good + bad) // 2
        if budget.fits(start, middle, limit):
            good = middle
        else:
            bad = middle
    if good == start:
        raise ValueError(f"max_tokens={budget.max_tokens} cannot hold a single character")
    return good


_WHITESPACE = re.compile(r"\s+")


def _overlap_start(budget: _TokenBudget, piece: Span, own: Span) -> int | None:
    """Where the next piece should start so that it repeats about overlap_tokens of `own`.

    The tail length is predicted from the piece's characters per token and corrected at
    most twice, so finding the overlap costs one or two small counts.
    """
    text = budget.text
    start, end = _strip_span(text, *own)
    want = budget.overlap_tokens
    chars_per_token = (piece[1] - piece[0]) / max(1, budget.content(*piece))
    reach = chars_per_token * want
    for _ in range(3):
        pos = _word_start_from(text, max(start + 1, end - int(reach)), end)
        if pos is None:
            return None
        tail = budget.content(pos, end)
        if tail <= want:
            return pos
        reach = (end - pos) * want / tail * 0.9
    return None


def _word_start_from(text: str, pos: int, end: int) -> int | None:
    """The first word start at or after pos; pos itself in text without spaces."""
    if pos >= end:
        return None
    if text[pos - 1].isspace() and not text[pos].isspace():
        return pos
    match = _WHITESPACE.search(text, pos, end)
    if match is None:
        return pos
    return match.end() if match.end() < end else None


# --------------------------------------------------------------------------------------------
# Boundary finders (each returns positions strictly inside (start, end), ascending)
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


def _line_starts(text: str, start: int, end: int) -> list[int]:
    return [line.start for line in _lines(text, start, end) if line.start > start]


def _matching_line_starts(pattern: re.Pattern[str], text: str, start: int, end: int) -> list[int]:
    return [
        line.start
        for line in _lines(text, start, end)
        if line.start > start and pattern.match(text, line.start, line.end)
    ]


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


# --------------------------------------------------------------------------------------------
# Markdown documents
# --------------------------------------------------------------------------------------------

_ATX_HEADING = re.compile(r" {0,3}(?P<marks>#{1,6})(?:[ \t]+(?P<title>.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT_UNDERLINE = re.compile(r" {0,3}(?P<bar>={2,}|-{2,})[ \t]*$")
_FENCE_OPEN = re.compile(r" {0,3}(?P<fence>`{3,}|~{3,})")
_FENCE_CLOSE = re.compile(r" {0,3}(?P<fence>`{3,}|~{3,})[ \t]*$")
# Lines that cannot be the title of a setext heading (lists, quotes, tables, HTML).
_NOT_PLAIN_LINE = re.compile(r"[ \t]*(?:[-*+>|<]|\d{1,9}[.)])")

_MARKDOWN_LEVELS: tuple[_Level, ...] = (
    _Level(_markdown_block_starts, overlap=False),
    *_PROSE_LEVELS,
)


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


# --------------------------------------------------------------------------------------------
# Law documents
# --------------------------------------------------------------------------------------------

_CIRCLED = "①-⑳㉑-㉟㊱-㊿"
# Markdown heading marks are allowed so that "## 제1장 총칙" still counts as a chapter.
_HEADING_PREFIX = r"[ \t]*(?:#{1,6}[ \t]+)?"
_ARTICLE_LINE = re.compile(
    _HEADING_PREFIX
    + r"제[ \t]*(?P<number>\d+)[ \t]*조(?:[ \t]*의[ \t]*(?P<branch>\d+))?"
    + r"(?:[ \t]*\((?P<title>[^()\r\n]{1,80})\)"
    + rf"|(?=[ \t{_CIRCLED}]|$))"
)
# After an untitled "제3조", these mean the line is prose citing an article, not a heading.
_CITATION_CONTINUATION = re.compile(r"[ \t]*(?:및|또는|내지|부터|까지|[,·ㆍ~∼-]|제[ \t]*\d)")
_DIVISION_LINE = re.compile(
    _HEADING_PREFIX
    + r"제[ \t]*(?P<number>\d+)[ \t]*(?P<unit>[편장절관])(?:[ \t]+(?P<title>\S.{0,60}?))?[ \t]*$"
)
_SUPPLEMENTARY_LINE = re.compile(_HEADING_PREFIX + r"부[ \t]*칙(?P<rest>[ \t]*(?:[<(（\[〈].*)?)$")
_CIRCLED_CHAR = re.compile(f"[{_CIRCLED}]")
_CLAUSE_LINE = re.compile(rf"[ \t]*(?P<symbol>[{_CIRCLED}])")
_ITEM_LINE = re.compile(r"[ \t]*\d{1,3}(?:의\d{1,3})?\.(?:[ \t]|$)")  # 호: "1." "2의2."
_SUBITEM_LINE = re.compile(r"[ \t]*[가나다라마바사아자차카타파하]\.(?:[ \t]|$)")  # 목: "가."

# Rank of each division in the heading path; 부칙 restarts the path.
_DIVISION_RANK = {"편": 1, "장": 2, "절": 3, "관": 4}
_SUPPLEMENTARY_RANK = 0


def _item_starts(text: str, start: int, end: int) -> list[int]:
    return _matching_line_starts(_ITEM_LINE, text, start, end)


def _subitem_starts(text: str, start: int, end: int) -> list[int]:
    return _matching_line_starts(_SUBITEM_LINE, text, start, end)


# Inside an article or 항: 호 and 목 are whole units (no overlap); below that, running text.
_LAW_ITEM_LEVELS: tuple[_Level, ...] = (
    _Level(_item_starts, overlap=False),
    _Level(_subitem_starts, overlap=False),
    *_PROSE_LEVELS,
)
# Text outside articles (title, preamble, a 부칙 without articles).
_LAW_TEXT_LEVELS: tuple[_Level, ...] = (_Level(_paragraph_starts, overlap=False), *_PROSE_LEVELS)


class _LawHeading(NamedTuple):
    rank: int | None  # None for an article
    label: str  # "제2장 회원", "제7조의2(휴관일)", "부칙 <제5호, 2024. 3. 1.>"
    label_end: int  # where the heading ends and the article's own text begins


class _LawBlock(NamedTuple):
    start: int
    end: int
    section: str
    label_end: int | None  # set for articles only


class _Clause(NamedTuple):
    start: int
    end: int
    symbol: str | None  # "②"


def _single_spaced(value: str) -> str:
    return " ".join(value.split())


def _law_heading(text: str, line: _Line) -> _LawHeading | None:
    article = _ARTICLE_LINE.match(text, line.start, line.end)
    if article and (
        article["title"] or not _CITATION_CONTINUATION.match(text, article.end(), line.end)
    ):
        label = f"제{article['number']}조"
        if article["branch"]:
            label += f"의{article['branch']}"
        if article["title"]:
            label += f"({_single_spaced(article['title'])})"
        return _LawHeading(None, label, article.end())
    division = _DIVISION_LINE.match(text, line.start, line.end)
    if division:
        label = f"제{division['number']}{division['unit']}"
        if division["title"]:
            label += f" {_single_spaced(division['title'])}"
        return _LawHeading(_DIVISION_RANK[division["unit"]], label, line.end)
    supplementary = _SUPPLEMENTARY_LINE.match(text, line.start, line.end)
    if supplementary:
        label = _single_spaced("부칙 " + supplementary["rest"])
        return _LawHeading(_SUPPLEMENTARY_RANK, label, line.end)
    return None


def _looks_like_law(text: str) -> bool:
    articles = divisions = 0
    for line in _lines(text, 0, len(text)):
        heading = _law_heading(text, line)
        if heading is None:
            continue
        if heading.rank is None:
            articles += 1
        else:
            divisions += 1
        if articles >= 2 or (articles and divisions):
            return True
    return False


def _law_blocks(text: str) -> list[_LawBlock]:
    """Articles, and the text between headings, each with its heading path.

    편/장/절/관/부칙 heading lines belong to no block: they live on in the section path.
    """
    blocks = []
    divisions: dict[int, str] = {}
    open_block = _LawBlock(0, 0, "", None)
    for line in _lines(text, 0, len(text)):
        heading = _law_heading(text, line)
        if heading is None:
            continue
        blocks.append(open_block._replace(end=line.start))
        if heading.rank is None:
            section = SECTION_SEPARATOR.join([*_division_path(divisions), heading.label])
            open_block = _LawBlock(line.start, 0, section, heading.label_end)
        else:
            _enter_division(divisions, heading.rank, heading.label)
            section = SECTION_SEPARATOR.join(_division_path(divisions))
            open_block = _LawBlock(line.next, 0, section, None)
    blocks.append(open_block._replace(end=len(text)))
    return [block for block in blocks if not _is_blank(text, block.start, block.end)]


def _enter_division(divisions: dict[int, str], rank: int, label: str) -> None:
    for deeper in [r for r in divisions if r >= rank]:
        del divisions[deeper]
    divisions[rank] = label


def _division_path(divisions: dict[int, str]) -> list[str]:
    return [divisions[rank] for rank in sorted(divisions)]


def _chunk_law(budget: _TokenBudget) -> list[_Piece]:
    pieces: list[_Piece] = []
    for block in _law_blocks(budget.text):
        if block.label_end is None:
            spans = _fit(budget, block.start, block.end, _LAW_TEXT_LEVELS)
            pieces.extend(_Piece(start, end, block.section) for start, end in spans)
        else:
            pieces.extend(_chunk_article(budget, block))
    return pieces


def _chunk_article(budget: _TokenBudget, article: _LawBlock) -> list[_Piece]:
    """The whole article when it fits; otherwise one or more chunks per 항 (paths end in it)."""
    if budget.fits(article.start, article.end, budget.max_tokens):
        return [_Piece(article.start, article.end, article.section)]
    pieces = []
    for clause in _article_clauses(budget.text, article):
        section = article.section
        if clause.symbol is not None:
            section += SECTION_SEPARATOR + clause.symbol
        for start, end in _fit(budget, clause.start, clause.end, _LAW_ITEM_LEVELS):
            pieces.append(_Piece(start, end, section))
    return pieces


def _article_clauses(text: str, article: _LawBlock) -> list[_Clause]:
    """Split an article at 항 (lines starting with ①②…).

    The first 항 usually shares the heading line ("제7조(회비) ① 회원은…"); when it starts on
    the next line instead, the bare heading is folded into it rather than left on its own.
    """
    assert article.label_end is not None
    lines = list(_lines(text, article.start, article.end))
    starts: list[int] = []
    symbols: list[str | None] = []
    for line in lines[1:]:
        clause = _CLAUSE_LINE.match(text, line.start, line.end)
        if clause:
            starts.append(line.start)
            symbols.append(clause["symbol"])
    if starts and _is_blank(text, article.label_end, starts[0]):
        del starts[0]  # the heading line holds nothing but the label
    else:
        symbols.insert(0, _leading_circled(text, article.label_end, lines[0].end))
    bounds = [article.start, *starts, article.end]
    return [
        _Clause(start, end, symbol)
        for (start, end), symbol in zip(pairwise(bounds), symbols, strict=True)
    ]


def _leading_circled(text: str, start: int, end: int) -> str | None:
    start, end = _strip_span(text, start, end)
    if start < end and _CIRCLED_CHAR.match(text[start]):
        return text[start]
    return None
