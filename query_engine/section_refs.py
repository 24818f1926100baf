"""Article references in a question ("제8조 제2항은?", "제8조의2", "8조 2항", "Article 8(2)")
turned into a filter on the section path that law chunking records (``제2장 > 제8조(출장) > ②``,
see ``indexing.chunking.laws``).

The filter pins rather than restricts: the retriever runs the filtered searches next to the
ordinary ones and puts the named article's chunks first, then the ordinary ranking. A hard
filter would lose the answer of "제8조에 따라 신고한 뒤 무엇을 해야 하나요?", which lies in
another article, and of a question naming an article of a law the collection does not hold; a
boost inside the fusion could still rank a long article's chunks below others that merely cite
"제8조" in their text, which is exactly what BM25 matches. Pinning gives the reader the article
asked for first and keeps everything else the question would have found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from indexing import schema
from indexing.chunking import SECTION_SEPARATOR
from indexing.store import quote

MAX_REFERENCES = 5
_CIRCLED = "①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬⑭⑮⑯⑰⑱⑲⑳"

# "제8조의2 제2항 제3호", "8조 2항", "제 8 조": with 제 the number is an article; without it,
# "5조 원" / "3조 5천억" are amounts, so a bare "N조" must not be followed by a money unit.
_KOREAN_REF = re.compile(
    r"(?<![\d.,])(?:제\s*)?(?P<article>\d{1,4})\s*조(?:\s*의\s*(?P<branch>\d{1,3}))?"
    r"(?!\s*(?:[원억만천백달엔위]|\d+\s*[원억만천백달엔위]))"
    r"(?:\s*(?:제\s*)?(?P<clause>\d{1,2})\s*항)?"
    r"(?:\s*(?:제\s*)?(?P<item>\d{1,3})\s*호)?"
)
# "Article 8(2)", "Art. 8-2", "article 8, paragraph 2"
_ENGLISH_REF = re.compile(
    r"\bart(?:icle|\.)?\s*(?P<article>\d{1,4})(?:-(?P<branch>\d{1,3}))?"
    r"(?:\s*\((?P<clause>\d{1,2})\)|,?\s*(?:paragraph|para\.?|§)\s*(?P<clause2>\d{1,2}))?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ArticleRef:
    article: int
    branch: int | None = None  # 제8조의2 → 2
    clause: int | None = None  # 항
    item: int | None = None  # 호

    @property
    def label(self) -> str:
        """The article as law chunking labels it: "제8조", "제8조의2"."""
        return f"제{self.article}조" + (f"의{self.branch}" if self.branch else "")

    @property
    def clause_symbol(self) -> str | None:
        if self.clause is None or not 1 <= self.clause <= len(_CIRCLED):
            return None
        return _CIRCLED[self.clause - 1]


def article_references(question: str) -> list[ArticleRef]:
    """The articles a question names, in order, once each (at most :data:`MAX_REFERENCES`)."""
    found: dict[ArticleRef, None] = {}
    for match in _KOREAN_REF.finditer(question):
        found.setdefault(
            ArticleRef(
                int(match["article"]),
                _int(match["branch"]),
                _int(match["clause"]),
                _int(match["item"]),
            ),
            None,
        )
    for match in _ENGLISH_REF.finditer(question):
        clause = match["clause"] or match["clause2"]
        found.setdefault(
            ArticleRef(int(match["article"]), _int(match["branch"]), _int(clause)), None
        )
    return [ref for ref in found if ref.article > 0][:MAX_REFERENCES]


def _int(value: str | None) -> int | None:
    return int(value) if value else None


def section_expression(refs: list[ArticleRef]) -> str:
    """Chunks whose section path holds one of the articles as a whole component.

    A component is the label alone ("제8조") or followed by its title ("제8조(출장)"), at the
    start, middle or end of the path, so 제8조 matches neither 제18조 nor 제8조의2.
    """
    field = f'{schema.METADATA}["section"]'
    sep = SECTION_SEPARATOR
    clauses = []
    for label in dict.fromkeys(ref.label for ref in refs):
        patterns = (
            f"{label}",
            f"{label}(%",
            f"{label}{sep}%",
            f"%{sep}{label}",
            f"%{sep}{label}(%",
            f"%{sep}{label}{sep}%",
        )
        clauses.append(f"{field} == {quote(patterns[0])}")
        clauses.extend(f"{field} like {quote(p)}" for p in patterns[1:])
    return "(" + " or ".join(clauses) + ")"


def names_clause(section: str, refs: list[ArticleRef]) -> bool:
    """Whether a chunk's section path ends in a 항 one of the references names."""
    symbols = {ref.clause_symbol for ref in refs} - {None}
    last = section.rsplit(SECTION_SEPARATOR, 1)[-1].strip()
    return last in symbols
