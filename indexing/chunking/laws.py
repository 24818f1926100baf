"""Law documents: Korean laws and internal regulations, cut per article (조).

An article's 항/호/목 stay inside its chunk; 편/장/절/관 and 부칙 headings become the section
path rather than chunks of their own. An article too long for the embedder is cut at 항, then
호, 목, sentences, lines and words.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import NamedTuple

from indexing.chunking.budget import _TokenBudget
from indexing.chunking.cutting import _fit, _Level
from indexing.chunking.paragraphs import _PROSE_LEVELS, _paragraph_starts
from indexing.chunking.spans import (
    SECTION_SEPARATOR,
    _is_blank,
    _Line,
    _lines,
    _Piece,
    _strip_span,
)

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


def _matching_line_starts(pattern: re.Pattern[str], text: str, start: int, end: int) -> list[int]:
    return [
        line.start
        for line in _lines(text, start, end)
        if line.start > start and pattern.match(text, line.start, line.end)
    ]


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
