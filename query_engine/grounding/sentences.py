"""Sentence splitting of an answer (Korean and English), keeping citation markers attached.

Line breaks always end a sentence; list markers and markdown prefixes are not part of it.
"""

from __future__ import annotations

import re

from query_engine.grounding.text import _Span

# A list marker or markdown prefix at the start of a line: "1. ", "2) ", "(3) ", "a) ", "- ",
# "* ", "• ", "## ", "> ". It is not part of the sentence, so "1." never becomes a claim and
# dropping the sentence removes the marker with it.
_LINE_PREFIX_RE = re.compile(
    r"[ \t]*(?:(?:#{1,6}|>|[-*+•·▪‣◦]|\(?[0-9]{1,3}[.)]|\(?[A-Za-z]\))[ \t]+)*"
)
# Terminal punctuation, closing quotes/brackets, then any citation markers that follow it
# ("… 50,000원입니다. [1]" — the marker belongs to the sentence before it), then a space or EOL.
_BOUNDARY_RE = re.compile(
    r"[.!?。！？…]+[\"'”’)」』]*"
    r"(?:[ \t]*\[[ \t]*[0-9]{1,3}(?:[ \t]*[,，\-–~][ \t]*[0-9]{1,3})*[ \t]*\])*"
    r"(?=[ \t]|$)"
)
_WORD_BEFORE_DOT_RE = re.compile(r"([A-Za-z][A-Za-z.]*)\.$")
# The last dot of a Korean dotted date ("2024. 3. 1.시행", "2024. 3. 1. 시행") closes the date,
# not the sentence.
_DOTTED_DATE_END_RE = re.compile(r"(?:19|20)[0-9]{2}\.[ \t]?[0-9]{1,2}\.[ \t]?[0-9]{1,2}\.$")
# Abbreviations whose period does not end a sentence (compared lowercased, without the final dot).
_ABBREVIATIONS = frozenset(
    """
    e.g i.e cf vs mr mrs ms dr prof sr jr st no art sec para ch fig approx inc ltd co corp dept
    u.s u.k jan feb mar apr jun jul aug sep sept oct nov dec
    """.split()
)


def _is_false_boundary(line: str, match: re.Match[str]) -> bool:
    """Reject a boundary that is a decimal-like date, an abbreviation or an initial."""
    start = match.start()
    rest = line[match.end() :].lstrip(" \t")
    next_char = rest[:1]
    if next_char.islower() and next_char.isascii():
        return True  # "e.g. the", "approx. five": an English sentence starts upper-case
    if line[start] != "." or match.group().rstrip(" \t") != ".":
        return False
    if start > 0 and line[start - 1].isdigit():
        if next_char.isdigit():
            return True  # "2024. 3. 1." before its last dot
        if _DOTTED_DATE_END_RE.search(line[max(0, start - 16) : start + 1]):
            return True
    word = _WORD_BEFORE_DOT_RE.search(line[max(0, start - 24) : start + 1])
    if word is None:
        return False
    token = word.group(1)
    return token.lower() in _ABBREVIATIONS or (len(token) == 1 and token.isupper())


def _line_sentence_spans(line: str, offset: int) -> list[_Span]:
    spans: list[_Span] = []
    prefix = _LINE_PREFIX_RE.match(line)
    cursor = prefix.end() if prefix else 0
    for match in _BOUNDARY_RE.finditer(line, cursor):
        if _is_false_boundary(line, match):
            continue
        spans.append((cursor, match.end()))
        cursor = match.end()
    spans.append((cursor, len(line)))
    return [
        (offset + s + (len(piece) - len(piece.lstrip())), offset + s + len(piece.rstrip()))
        for s, e in spans
        if (piece := line[s:e]).strip()
    ]


def _sentence_spans(text: str) -> list[_Span]:
    """Sentence spans in ``text``: line breaks always end a sentence, list markers are excluded."""
    spans: list[_Span] = []
    offset = 0
    for line in text.split("\n"):
        spans.extend(_line_sentence_spans(line, offset))
        offset += len(line) + 1
    return spans


def split_sentences(text: str) -> list[str]:
    """Split an answer into sentences (Korean and English), keeping citation markers attached."""
    return [text[start:end] for start, end in _sentence_spans(text)]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text``: line breaks always end one, a leading list
    marker is not part of it. The extractive answerer quotes sources by these spans."""
    return _sentence_spans(text)
