"""Law references: Korean 제N조 (and 항, 호, …) and English "Article N", "Section N".

Normalized keys use the Korean Legislation Research Institute's English terms.
"""

from __future__ import annotations

import re

from query_engine.grounding.types import _Found

_KO_LAW_LEVELS = {
    "편": "part",
    "장": "chapter",
    "절": "section",
    "관": "subsection",
    "조": "article",
    "항": "paragraph",
    "호": "subparagraph",
    "목": "item",
}
_EN_LAW_LEVELS = {
    "article": "article", "art.": "article", "section": "section", "sec.": "section",
    "§": "section", "§§": "section", "clause": "clause", "paragraph": "paragraph",
    "para.": "paragraph", "subparagraph": "subparagraph", "chapter": "chapter", "ch.": "chapter",
    "part": "part",
}  # fmt: skip
# 제12조, 제12조의2, 제 3 항, 제2호, 제3장 — each level is its own claim, so "제12조 제2항" matches
# a source that has 제12조 in its heading and ② in its body.
_KO_LAW_RE = re.compile(r"제[ \t]?([0-9]+)[ \t]?([편장절관조항호목])(?:[ \t]?의[ \t]?([0-9]+))?")
# English references are found from their number: the digit pass looks back a few characters for
# a keyword (a case-insensitive full-text scan for the keywords costs more than the whole pass).
_EN_LAW_KEYWORD_BEFORE_RE = re.compile(
    r"(?<![A-Za-z])(?P<kw>articles?|art\.|sections?|sec\.|§§?|clauses?|subparagraphs?"
    r"|paragraphs?|para\.|chapters?|ch\.|parts?)[ \t]*$",
    re.IGNORECASE,
)
_EN_LAW_NUMBER_RE = re.compile(r"[0-9]+[A-Za-z]?(?:-[0-9]+)?(?:\([0-9A-Za-z]{1,4}\))*")
_LAW_SUBPART_RE = re.compile(r"\([0-9a-z]{1,4}\)")
# Circled numbers mark paragraphs (항) in Korean statutes: ① = 제1항. Only read in sources: in an
# answer they are as likely to be list bullets.
_CIRCLED_RE = re.compile(r"[\u2460-\u2473]")


def _ko_law_key(match: re.Match[str]) -> str:
    number, level, branch = match.groups()
    suffix = f"-{int(branch)}" if branch else ""
    return f"{_KO_LAW_LEVELS[level]} {int(number)}{suffix}"


def _en_law_level(keyword: str) -> str:
    keyword = keyword.lower()
    return _EN_LAW_LEVELS.get(keyword) or _EN_LAW_LEVELS[keyword.rstrip("s")]


def _find_korean_law_refs(text: str) -> list[_Found]:
    return [
        _Found(m.start(), m.end(), "law_ref", _ko_law_key(m)) for m in _KO_LAW_RE.finditer(text)
    ]


def _english_law_ref_at(text: str, start: int) -> _Found | None:
    """ "Article 12", "Section 4(b)" when the digits at ``start`` follow a law keyword."""
    window = max(0, start - 16)
    before = text[window:start].rstrip(" \t")[-1:]
    if not (before.isascii() and before.isalpha()) and before not in (".", "§"):
        return None  # cheap exit for the usual digit after a space, Hangul or punctuation
    keyword = _EN_LAW_KEYWORD_BEFORE_RE.search(text, window, start)
    if keyword is None:
        return None
    number = _EN_LAW_NUMBER_RE.match(text, start)
    if number is None:
        return None
    key = f"{_en_law_level(keyword.group('kw'))} {number.group().lower()}"
    return _Found(keyword.start(), number.end(), "law_ref", key)
