"""Deterministic grounding check: are the checkable facts of an answer in the sources it cites?

The LLM answers with citation markers ([1], [1, 2], [1][2]). This module splits the answer into
sentences, pulls the *checkable* facts out of each one (numbers and amounts, dates, law
references, proper nouns) and looks each one up in the sources the sentence cites. No model is
called: the check is regexes, one Kiwi morpheme analysis per Korean sentence (the process-wide
Kiwi of :mod:`indexing.analysis`, shared and thread-safe) and set lookups, so it gives the same
answer every time and costs about a millisecond per answer once its sources are indexed.

Matching rules, chosen to keep false alarms low (flagging a correct answer costs the user the
answer; a missed paraphrased fact costs less):

- Numbers compare by value, not by spelling or unit: "50,000원" = "5만 원" = "50000 won",
  "3.5%" = "3.5 퍼센트", "$1.2 million" = "$1,200,000". A number is supported only by a whole
  number of the source, so "50" is not supported by "500". Every digit run of a source counts,
  including those inside its dates and law references.
- Dates compare by their parts: "2024년 3월 1일" = "2024-03-01" = "2024. 3. 1." = "March 1, 2024".
  A claim may leave parts out ("3월 1일", "March 2024", "2024") and then matches any source date
  with the parts it gives. A year may come from elsewhere in the source ("2024년도 … 3월 1일").
- Law references are mapped to the Korean Legislation Research Institute's English terms, so
  "제12조의2" = "Article 12-2" and "제3항" = "Paragraph 3" = a circled "③" in the source.
- Korean proper nouns (Kiwi tag NNP) are found as substrings of the source with whitespace
  removed, so particles attached in the source (김철수가, 서울특별시에) do not matter. English
  names are runs of capitalized words ("Seoul National University"), found case-insensitively
  on word boundaries, or word by word. A name is only checked against sources written mainly in
  its script: an English answer over a Korean document translates names.

Scoping: a sentence that cites [n] is checked against those sources only; a sentence without a
marker is checked against all sources. Citation numbers missing from ``sources`` are ignored, and
a sentence citing only missing numbers has every claim unsupported: a fact attributed to a
source that does not exist is not grounded.

Known limits: facts written in words ("three days", "세 개") are not claims; numbers compare
without their units; a sentence citing several sources is checked against their union, not
clause by clause; a small number in an inline list ("Steps: 1. Apply") may be read as a claim;
Kiwi tags some loanwords as NNP (프롬프트), so a respelled loanword is flagged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Literal

from docqa_core.citations import CITATION_MARKER_RE, cited_numbers
from docqa_core.scripts import has_hangul, main_script
from indexing.analysis import extract_korean_proper_nouns

__all__ = [
    "Claim",
    "ClaimKind",
    "GroundingPolicy",
    "GroundingResult",
    "UnsupportedClaim",
    "apply_policy",
    "check_grounding",
    "extract_claims",
    "split_sentences",
]

ClaimKind = Literal["number", "date", "law_ref", "name"]
GroundingPolicy = Literal["flag", "drop", "refuse"]


@dataclass(frozen=True, slots=True)
class Claim:
    """One checkable fact of a sentence: ``text`` as written, ``normalized`` for matching."""

    kind: ClaimKind
    text: str
    normalized: str


@dataclass(frozen=True, slots=True)
class UnsupportedClaim:
    sentence_index: int
    sentence: str
    claim: str
    kind: ClaimKind


@dataclass(frozen=True, slots=True)
class GroundingResult:
    """``verified`` means no claim was found unsupported (also when there was nothing to check)."""

    verified: bool
    unsupported: tuple[UnsupportedClaim, ...]
    checked_claims: int

    def to_dict(self) -> dict[str, object]:
        return {
            "verified": self.verified,
            "unsupported": [
                {"sentence": u.sentence, "claim": u.claim, "kind": u.kind} for u in self.unsupported
            ],
            "checked_claims": self.checked_claims,
        }


# ---------------------------------------------------------------------------------------------
# Shared text helpers

# Full-width ASCII (５０，０００원, ％) → ASCII, one character for one, so offsets into the
# folded text are offsets into the original.
_FULLWIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_FULLWIDTH_RE = re.compile("[\uff01-\uff5e\u3000]")
_WHITESPACE_RE = re.compile(r"\s+")

_Span = tuple[int, int]


def _fold_width(text: str) -> str:
    # str.translate walks every character through a dict; most text has nothing to fold.
    return text.translate(_FULLWIDTH) if _FULLWIDTH_RE.search(text) else text


def _mask(text: str, spans: Iterable[_Span], fill: str = " ") -> str:
    """Blank out ``spans`` with ``fill``, keeping offsets, so later patterns cannot reuse them."""
    parts: list[str] = []
    last = 0
    for start, end in sorted(spans):
        parts.append(text[last:start])
        parts.append(fill * (end - start))
        last = end
    parts.append(text[last:])
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# Citation markers

_CITATION_FILL = "¦"
# "Document 2", "Source 1", "문서 1", "출처 2": the model naming a source in words. Its number is
# about the retrieval, not a fact of the source, so it is not a claim (nor a citation: "문서 3개"
# is "three documents").
_SOURCE_REF_RE = re.compile(
    r"(?<![A-Za-z])(?:[Dd]ocuments?|[Ss]ources?|[Cc]ontext|[Pp]assages?|문서|자료|출처)"
    r"[ \t]*(?:#|No\.)?[ \t]*[0-9]{1,3}(?![0-9]|[.,][0-9])"
)
# ---------------------------------------------------------------------------------------------
# Sentence splitting

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


# ---------------------------------------------------------------------------------------------
# Numbers, times and dates. Everything that starts with a digit is read in one left-to-right
# pass: at each digit run the character after it picks the few patterns worth trying (anchored
# ``match``, not a full-text scan per pattern), and the first that fits consumes the text.

_NUM = r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?"
_DIGIT_RUN_RE = re.compile(r"[0-9]+")
_PLAIN_NUMBER_RE = re.compile(rf"(?:{_NUM})(?![0-9])")
# Korean numeral units after digits: 5만, 3천만, 1억 5천만, 2.5억. 조 is also "article" (3조), so it
# counts as trillion only before more digits, another unit or a currency. A unit without digits
# must touch the previous one (5천만) so "3천 백화점" does not read as 3,000 × 100.
_KO_UNITS = {"백": Decimal(100), "천": Decimal(1000)}
_KO_BIG_UNITS = {"만": Decimal(10**4), "억": Decimal(10**8), "조": Decimal(10**12)}
_KO_FIRST_UNIT = r"(?:[억만천백]|조(?=[ \t]?(?:[0-9]|원|달러|억|만|천)))"
_KO_NEXT_UNIT = rf"(?:[ \t]?(?:{_NUM})[조억만천백]|[조억만천백])"
_KO_UNIT_PART_RE = re.compile(rf"({_NUM})?([조억만천백])")
_EN_SCALES = {
    "thousand": Decimal(10**3),
    "million": Decimal(10**6),
    "billion": Decimal(10**9),
    "trillion": Decimal(10**12),
}
_NUMBER_RE = re.compile(
    rf"(?P<num>{_NUM})"
    rf"(?P<ko>{_KO_FIRST_UNIT}{_KO_NEXT_UNIT}*(?!큼))?"
    r"(?:[ \t]?(?P<scale>(?i:thousand|million|billion|trillion))\b)?"
    r"(?P<unit>[ \t]?(?:%|퍼센트|원|달러|엔|유로|위안))?"
    r"(?![0-9])"
)
# A currency sign before the digits belongs to the claim's text ("$1,200"), not to its value.
_CURRENCY_BEFORE_RE = re.compile(r"(?:US\$|\$|₩|€|£|¥|(?:KRW|USD|EUR|JPY)[ \t]?)$")
_CURRENCY_LAST_CHARS = frozenset("$₩€£¥WDRY")
# Times of day: 9:30, 18:00:00.
_TIME_RE = re.compile(r"(?<![0-9.:])([01]?[0-9]|2[0-3]):([0-5][0-9])(?::[0-5][0-9])?(?![0-9:])")


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None


def _canonical(value: Decimal) -> str:
    """One spelling per value: 50000, 3.5, 0.25 (no exponent, no trailing zeros)."""
    return format(value.normalize(), "f")


def _korean_amount(digits: str, units: str) -> Decimal:
    """Value of "1억 5천만" given as ("1", "억 5천만"): 천/백 scale a section, 만/억/조 close it."""
    total = Decimal(0)
    section = Decimal(0)
    for number, unit in _KO_UNIT_PART_RE.findall(digits + units):
        value = _decimal(number) if number else None
        if unit in _KO_UNITS:
            section += (value if value is not None else Decimal(1)) * _KO_UNITS[unit]
        else:
            section += value if value is not None else Decimal(0)
            total += (section or Decimal(1)) * _KO_BIG_UNITS[unit]
            section = Decimal(0)
    return total + section


def _canonical_text(number: str) -> str | None:
    """:func:`_canonical` of a written number; plain digit strings skip Decimal (most numbers)."""
    plain = number.replace(",", "")
    if plain.isdigit():
        return plain.lstrip("0") or "0"
    value = _decimal(plain)
    return None if value is None else _canonical(value)


def _number_key(match: re.Match[str]) -> str | None:
    digits = match.group("num")
    if match.group("ko"):
        return _canonical(_korean_amount(digits, match.group("ko")))
    scale = match.group("scale")
    if not scale:
        return _canonical_text(digits)
    value = _decimal(digits)
    return None if value is None else _canonical(value * _EN_SCALES[scale.lower()])


def _is_bare_year(match: re.Match[str], has_currency: bool) -> bool:
    """A plain 4-digit 1900-2099 with no currency, unit or separator reads as a year."""
    digits = match.group("num")
    if len(digits) != 4 or has_currency or not digits.isdigit():
        return False
    if match.group("ko") or match.group("scale") or match.group("unit"):
        return False
    return 1900 <= int(digits) <= 2099


# Dates. Normalized keys are ISO-like: 2024-03-01, 2024-03, 2024, --03-01 (month-day), --03.

_DateParts = tuple[int | None, int | None, int | None]

_MONTH_NAMES = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip
_MONTH = (
    r"(?<![A-Za-z])(?P<mon>Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?"
    r"|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\b\.?"
)
# English dates need a month name; this cheap literal scan skips their patterns otherwise.
_MONTH_HINT_RE = re.compile(r"Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec")
_YEAR = r"(?:19|20)[0-9]{2}"
# 2024-03-01, 2024/3/1, 2024.3.1, 2024. 3. 1.
_ISO_DATE_RE = re.compile(
    rf"(?<![0-9.])(?P<y>{_YEAR})[ \t]?(?P<sep>[-/.])[ \t]?(?P<m>[0-9]{{1,2}})[ \t]?(?P=sep)"
    r"[ \t]?(?P<d>[0-9]{1,2})(?![0-9])\.?"
)
# 03/01/2024 (US order)
_US_DATE_RE = re.compile(
    rf"(?<![0-9/])(?P<m>[0-9]{{1,2}})/(?P<d>[0-9]{{1,2}})/(?P<y>{_YEAR})(?![0-9])"
)
# 2024-03, 2024/03, 2024. 3.
_YEAR_MONTH_RE = re.compile(
    rf"(?<![0-9.])(?P<y>{_YEAR})(?:[-/](?P<m>[0-9]{{1,2}})(?![0-9/-])"
    r"|\.[ \t](?P<m2>[0-9]{1,2})\.(?![ \t]?[0-9]))"
)
# 3. 1. (Korean month-day without a year; the space after the first dot keeps "3.1" a decimal)
_MONTH_DAY_DOT_RE = re.compile(r"(?<![0-9.])(?P<m>[0-9]{1,2})\.[ \t](?P<d>[0-9]{1,2})\.(?![0-9])")
# 2024년 3월 1일, 2024년 3월, 2024년
_KO_YEAR_RE = re.compile(
    r"(?P<y>[0-9]{4})[ \t]?년(?:[ \t]?(?P<m>[0-9]{1,2})[ \t]?월"
    r"(?:[ \t]?(?P<d>[0-9]{1,2})[ \t]?일)?)?"
)
# 3월 1일, 3월
_KO_MONTH_RE = re.compile(r"(?P<m>[0-9]{1,2})[ \t]?월(?:[ \t]?(?P<d>[0-9]{1,2})[ \t]?일)?")
# English dates are matched where a month name starts (found by the literal scan above).
# March 1, 2024; Mar. 1st; March 1
_MONTH_DAY_YEAR_RE = re.compile(
    rf"{_MONTH}[ \t]+(?P<d>[0-9]{{1,2}})(?:st|nd|rd|th)?(?![0-9])"
    rf"(?:,?[ \t]+(?P<y>{_YEAR})(?![0-9]))?"
)
# 1 March 2024, 1st of March (matched from the day, found by looking back from the month)
_DAY_MONTH_YEAR_RE = re.compile(
    rf"(?<![0-9])(?P<d>[0-9]{{1,2}})(?:st|nd|rd|th)?[ \t]+(?:of[ \t]+)?{_MONTH}"
    rf"(?:,?[ \t]+(?P<y>{_YEAR})(?![0-9]))?"
)
_DAY_BEFORE_MONTH_RE = re.compile(r"(?<![0-9])[0-9]{1,2}(?:st|nd|rd|th)?[ \t]+(?:of[ \t]+)?$")
# March 2024
_MONTH_YEAR_RE = re.compile(rf"{_MONTH},?[ \t]+(?P<y>{_YEAR})(?![0-9])")


def _group(match: re.Match[str], *names: str) -> str | None:
    groups = match.groupdict()
    return next((groups[n] for n in names if groups.get(n)), None)


def _date_parts(match: re.Match[str]) -> _DateParts | None:
    year_text = _group(match, "y")
    month_text = _group(match, "m", "m2")
    day_text = _group(match, "d")
    month_name = _group(match, "mon")
    year = int(year_text) if year_text else None
    month = _MONTH_NAMES[month_name[:3].lower()] if month_name else None
    if month_text:
        month = int(month_text)
    day = int(day_text) if day_text else None
    if month is not None and not 1 <= month <= 12:
        return None
    if day is not None and not 1 <= day <= 31:
        return None
    return year, month, day


def _date_key(parts: _DateParts) -> str:
    year, month, day = parts
    pieces = [f"{year:04d}" if year is not None else "-"]
    if month is not None:
        pieces.append(f"{month:02d}")
    if day is not None:
        pieces.append(f"{day:02d}")
    return "-".join(pieces)


def _parse_date_key(key: str) -> _DateParts:
    """Inverse of :func:`_date_key`."""
    year_text, _, rest = key.partition("-") if not key.startswith("--") else ("", "", key[2:])
    parts: list[int | None] = [int(p) for p in rest.split("-")] if rest else []
    parts += [None] * (2 - len(parts))
    return (int(year_text) if year_text else None), parts[0], parts[1]


# ---------------------------------------------------------------------------------------------
# Law references. Normalized keys use the Korean Legislation Research Institute's English terms.

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


# ---------------------------------------------------------------------------------------------
# English names

# Hyphens split words: "Seoul-based" is checked as "Seoul", "Jean-Paul" as "Jean" and "Paul".
_EN_TOKEN_RE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z][A-Za-z0-9]*(?:['’&.][A-Za-z0-9]+)*")
# Lower-case words allowed inside a name: "Bank of Korea", "Bank of the Philippine Islands".
# Not "and"/"&": "Samsung and LG" is two names, and "Ministry of Employment and Labor" still
# matches as "Ministry of Employment" plus "Labor".
_NAME_CONNECTORS = frozenset(
    {"of", "the", "de", "del", "da", "du", "la", "le", "van", "von", "der"}
)
# Capitalized words that are never part of a name: function words that open sentences, the
# pronoun I, honorifics, and weekday and month names (dates, not names).
_NAME_BREAKERS = frozenset(
    """
    i the a an this that these those it its in on at for from to by with as if when while where
    what which who whom whose why how however according yes no not please based also therefore
    thus there here they we you he she our your their my his her each every all some any both
    under per after before during since because although but and or so then unfortunately sorry
    note see unless only other such most many more further furthermore moreover additionally
    within without upon do does did is are was were be can could should would will shall must
    mr mrs ms dr prof sir
    monday tuesday wednesday thursday friday saturday sunday
    january february march april may june july august september october november december
    jan feb mar apr jun jul aug sep sept oct nov dec
    """.split()
)
# Single words that are capitalized but are not names worth checking (answer boilerplate).
_GENERIC_WORDS = frozenset(
    """
    pdf faq api url id ok ai llm hr it etc am pm q&a answer question source sources summary
    document documents context passage korean english
    """.split()
)
# Kiwi tags language names as NNP; answers name the language they answer in ("한국어로 답하면").
_KOREAN_GENERIC_NOUNS = frozenset({"한국어", "한글", "영어", "중국어", "일본어"})
# Characters skipped when deciding whether a word opens its sentence or clause.
_OPENING_CHARS = frozenset(" \t*_\"'“‘(「#>")


def _is_capitalized(word: str) -> bool:
    return word[0].isupper()


def _base_word(word: str) -> str:
    """The word before an apostrophe, lowercased: "I'm" → "i", "Samsung's" → "samsung"."""
    return re.split(r"['’]", word, maxsplit=1)[0].lower()


def _is_clause_initial(text: str, position: int) -> bool:
    """True when only markup separates ``position`` from the sentence start or a colon."""
    index = position - 1
    while index >= 0 and text[index] in _OPENING_CHARS:
        index -= 1
    return index < 0 or text[index] in ":："


def _name_groups(text: str) -> list[list[re.Match[str]]]:
    """Runs of capitalized words joined by spaces and lower-case connectors."""
    groups: list[list[re.Match[str]]] = []
    current: list[re.Match[str]] = []
    pending: list[re.Match[str]] = []
    previous_end = -1
    for token in _EN_TOKEN_RE.finditer(text):
        word = token.group()
        # One space joins words; a tab, two spaces or punctuation is a cell or list boundary.
        adjacent = previous_end >= 0 and text[previous_end : token.start()] == " "
        if _is_capitalized(word) and _base_word(word) not in _NAME_BREAKERS:
            if not (current and adjacent):
                groups.append(current)
                current = []
            current.extend(pending)
            current.append(token)
            pending = []
            if word.endswith(("'s", "’s")):  # "Samsung's Galaxy": the owner ends the name
                groups.append(current)
                current = []
        elif current and adjacent and word in _NAME_CONNECTORS:
            pending.append(token)
        else:
            groups.append(current)
            current, pending = [], []
        previous_end = token.end()
    groups.append(current)
    return [group for group in groups if group]


def _english_names(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for group in _name_groups(text):
        start, end = group[0].start(), group[-1].end()
        if text[end - 2 : end] in ("'s", "’s"):
            end -= 2  # possessive: "Samsung's" is checked as "Samsung"
        if len(group) == 1:
            word = text[start:end]
            if (
                len(word) == 1
                or word.lower() in _GENERIC_WORDS
                # A lone capitalized word opening a sentence is usually a common word
                # ("Employees must …"); multi-word runs there ("Seoul National University")
                # are still checked.
                or _is_clause_initial(text, start)
            ):
                continue
        spans.append((start, end))
    return spans


def _english_name_key(text: str) -> str:
    return _WHITESPACE_RE.sub(" ", text.replace("’", "'")).strip().lower()


def _korean_name_key(text: str) -> str:
    return _WHITESPACE_RE.sub("", text).lower()


# ---------------------------------------------------------------------------------------------
# Claim extraction


@dataclass(frozen=True, slots=True)
class _Found:
    start: int
    end: int
    kind: ClaimKind
    key: str


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


def _date_found(match: re.Match[str]) -> _Found | None:
    parts = _date_parts(match)
    return None if parts is None else _Found(match.start(), match.end(), "date", _date_key(parts))


def _english_date_at(text: str, month_start: int) -> _Found | None:
    match = _MONTH_DAY_YEAR_RE.match(text, month_start)
    if match is None:
        day = _DAY_BEFORE_MONTH_RE.search(text, max(0, month_start - 12), month_start)
        match = _DAY_MONTH_YEAR_RE.match(text, day.start()) if day else None
    if match is None:
        match = _MONTH_YEAR_RE.match(text, month_start)
    return _date_found(match) if match else None


def _find_english_dates(text: str) -> list[_Found]:
    found: list[_Found] = []
    consumed = 0
    for hint in _MONTH_HINT_RE.finditer(text):
        if hint.start() < consumed:
            continue
        item = _english_date_at(text, hint.start())
        if item is not None:
            found.append(item)
            consumed = item.end
    return found


def _time_found(match: re.Match[str]) -> _Found:
    key = f"{int(match.group(1))}:{match.group(2)}"
    return _Found(match.start(), match.end(), "number", key)


def _number_found(text: str, match: re.Match[str]) -> _Found | None:
    key = _number_key(match)
    if key is None:
        return None
    start = match.start()
    currency = None
    if text[max(0, start - 5) : start].rstrip(" \t")[-1:] in _CURRENCY_LAST_CHARS:
        currency = _CURRENCY_BEFORE_RE.search(text, max(0, start - 4), start)
    kind: ClaimKind = "date" if _is_bare_year(match, currency is not None) else "number"
    return _Found(currency.start() if currency else start, match.end(), kind, key)


def _numeric_candidates(text: str, run_end: int) -> tuple[re.Pattern[str], ...]:
    """The date/time patterns worth trying for a digit run, chosen by what follows it."""
    following = text[run_end : run_end + 1]
    if following in ("-", "/", "."):
        return (_ISO_DATE_RE, _US_DATE_RE, _YEAR_MONTH_RE, _MONTH_DAY_DOT_RE)
    if following == ":":
        return (_TIME_RE,)
    following = text[run_end : run_end + 2].lstrip(" \t")[:1]
    if following == "년":
        return (_KO_YEAR_RE,)
    if following == "월":
        return (_KO_MONTH_RE,)
    return ()


def _numeric_at(text: str, start: int, run_end: int) -> _Found | None:
    law_ref = _english_law_ref_at(text, start)
    if law_ref is not None:
        return law_ref
    for pattern in _numeric_candidates(text, run_end):
        match = pattern.match(text, start)
        if match is None:
            continue
        found = _time_found(match) if pattern is _TIME_RE else _date_found(match)
        if found is not None:
            return found
    match = _NUMBER_RE.match(text, start)
    return _number_found(text, match) if match else None


def _find_numeric(text: str) -> list[_Found]:
    """Numeric dates, times, amounts and numbers, left to right, none overlapping."""
    found: list[_Found] = []
    consumed = 0
    for run in _DIGIT_RUN_RE.finditer(text):
        if run.start() < consumed:
            continue  # inside what an earlier match took ("000" of "1,000")
        item = _numeric_at(text, run.start(), run.end())
        if item is not None:
            found.append(item)
            consumed = item.end
    return found


def _plain_numbers(text: str) -> set[str]:
    """Every digit run of a source as a number, whatever surrounds it (dates, law refs, codes)."""
    numbers: set[str] = set()
    consumed = 0
    for run in _DIGIT_RUN_RE.finditer(text):
        if run.start() < consumed:
            continue
        match = _PLAIN_NUMBER_RE.match(text, run.start())
        if match and (key := _canonical_text(match.group())) is not None:
            numbers.add(key)
            consumed = match.end()
    return numbers


def _prepare_sentence(sentence: str) -> str:
    """Width-folded sentence with citation markers and a leading list marker blanked out."""
    text = _fold_width(sentence)
    prefix = _LINE_PREFIX_RE.match(text)
    if prefix and prefix.end():
        text = _mask(text, [(0, prefix.end())])
    # A symbol, not a space: "PubMed [63] MIMIC" must not read as one name.
    spans = [m.span() for m in CITATION_MARKER_RE.finditer(text)]
    spans += [m.span() for m in _SOURCE_REF_RE.finditer(_mask(text, spans))]
    return _mask(text, spans, fill=_CITATION_FILL)


def _structured_claims(text: str) -> tuple[list[_Found], str]:
    """Law refs, dates and numbers of ``text``, and the text the name finders should read.

    Korean law refs and English dates are masked before the digit pass so the 12 of 제12조 and
    the 1 of "March 1" are not read again; English law refs come out of the digit pass. The name
    text has law refs and English dates masked ("Article", "March" are not names) but keeps the
    other digits, since names may hold them ("Galaxy S24").
    """
    found = _find_korean_law_refs(text)
    found += _find_english_dates(_mask(text, ((f.start, f.end) for f in found)))
    text = _mask(text, ((f.start, f.end) for f in found))
    numeric = _find_numeric(text)
    names_text = _mask(text, ((f.start, f.end) for f in numeric if f.kind == "law_ref"))
    return [*found, *numeric], names_text


def _name_claims(text: str) -> list[_Found]:
    found = [
        _Found(start, end, "name", _english_name_key(text[start:end]))
        for start, end in _english_names(text)
    ]
    if has_hangul(text):
        found += _korean_name_claims(text)
    return found


def _korean_name_claims(text: str) -> list[_Found]:
    found: list[_Found] = []
    cursor = 0
    for noun in extract_korean_proper_nouns(text):
        # One-syllable NNPs (e.g. a lone surname) are too ambiguous to check.
        if len(noun.strip()) < 2 or not has_hangul(noun) or noun in _KOREAN_GENERIC_NOUNS:
            continue
        start = text.find(noun, cursor)
        start = start if start >= 0 else text.find(noun)
        if start < 0:
            continue
        cursor = start + len(noun)
        found.append(_Found(start, cursor, "name", _korean_name_key(noun)))
    return found


def extract_claims(sentence: str) -> list[Claim]:
    """The checkable facts of one sentence, in order, each (kind, normalized) once.

    Citation markers and a leading list marker are not claims.
    """
    text = _prepare_sentence(sentence)
    found, names_text = _structured_claims(text)
    found += _name_claims(names_text)
    claims: list[Claim] = []
    seen: set[tuple[str, str]] = set()
    for item in sorted(found, key=lambda f: (f.start, f.end)):
        if (item.kind, item.key) in seen:
            continue
        seen.add((item.kind, item.key))
        claims.append(Claim(item.kind, sentence[item.start : item.end].strip(), item.key))
    return claims


# ---------------------------------------------------------------------------------------------
# Source index: everything a claim can be matched against, built once per distinct source text.


@dataclass(frozen=True, slots=True)
class _SourceFacts:
    numbers: frozenset[str]
    times: frozenset[str]
    dates: tuple[_DateParts, ...]
    laws: frozenset[str]
    spaced: str  # lowercased, whitespace collapsed: English names on word boundaries
    compact: str  # lowercased, whitespace removed: Korean names as substrings
    language: str  # "ko", "en" or "other", by majority of words


@lru_cache(maxsize=4096)
def _source_facts(source: str) -> _SourceFacts:
    """Index one source. Cached by text: the same chunks are retrieved for many questions."""
    text = _fold_width(source)
    found, _ = _structured_claims(text)
    numbers = {f.key for f in found if f.kind == "number" and ":" not in f.key}
    # Every digit run counts as a number too, so "15" is supported by "15일" or "제15조", and the
    # year of a date is available on its own.
    numbers |= _plain_numbers(text)
    laws = {f.key for f in found if f.kind == "law_ref"}
    laws.update(f"paragraph {ord(c) - 0x245F}" for c in _CIRCLED_RE.findall(text))
    lowered = text.replace("’", "'").lower()
    return _SourceFacts(
        numbers=frozenset(numbers),
        times=frozenset(f.key for f in found if ":" in f.key),
        dates=tuple(_parse_date_key(f.key) for f in found if f.kind == "date" and "-" in f.key),
        laws=frozenset(laws),
        spaced=" ".join(lowered.split()),
        compact="".join(lowered.split()),
        language=main_script(text),
    )


def _number_supported(key: str, facts: _SourceFacts) -> bool:
    if ":" not in key:
        return key in facts.numbers
    if key in facts.times:
        return True
    hour, minute = (int(p) for p in key.split(":"))
    # "15:30" against "오후 3시 30분" or "15시 30분": hours and minutes written as bare numbers.
    hour_ok = str(hour) in facts.numbers or str(hour - 12) in facts.numbers
    return hour_ok and (minute == 0 or str(minute) in facts.numbers)


def _date_supported(key: str, facts: _SourceFacts) -> bool:
    year, month, day = _parse_date_key(key)
    if month is None:
        return str(year) in facts.numbers
    for s_year, s_month, s_day in facts.dates:
        if s_month != month or (day is not None and s_day != day):
            continue
        if year is None or s_year == year:
            return True
        if s_year is None and str(year) in facts.numbers:
            return True  # "2024년도 시행 … 3월 1일부터": the year is stated elsewhere
    return False


def _law_supported(key: str, facts: _SourceFacts) -> bool:
    if key in facts.laws:
        return True
    # "Section 4(b)" against a source with "Section 4" and a "(b)" item in its body.
    subparts = _LAW_SUBPART_RE.findall(key)
    base = _LAW_SUBPART_RE.sub("", key)
    return (
        bool(subparts)
        and base in facts.laws
        and all(
            part in facts.spaced or f"paragraph {part[1:-1]}" in facts.laws for part in subparts
        )
    )


def _contains_word(haystack: str, needle: str) -> bool:
    """``needle`` in ``haystack`` not glued to letters or digits ("Kim" is not in "Kimberly")."""
    start = haystack.find(needle)
    while start >= 0:
        end = start + len(needle)
        before = haystack[start - 1] if start else " "
        after = haystack[end] if end < len(haystack) else " "
        if not (before.isascii() and before.isalnum()) and not (
            after.isascii() and after.isalnum()
        ):
            return True
        start = haystack.find(needle, start + 1)
    return False


def _name_supported(key: str, facts: _SourceFacts) -> bool:
    if has_hangul(key):
        return key in facts.compact
    if _contains_word(facts.spaced, key):
        return True
    # A run of capitalized words may join two names ("Samsung Electronics CEO Lee Jae-yong"):
    # it is also supported when each of its words is in the source. A made-up name still fails
    # on its own word ("Yonsei University" against a source naming only Seoul National University).
    words = [w for w in key.split(" ") if w not in _NAME_CONNECTORS]
    return len(words) > 1 and all(_contains_word(facts.spaced, w) for w in words)


_SUPPORT_CHECKS: dict[ClaimKind, Callable[[str, _SourceFacts], bool]] = {
    "number": _number_supported,
    "date": _date_supported,
    "law_ref": _law_supported,
    "name": _name_supported,
}


def _verdict(claim: Claim, pool: list[_SourceFacts]) -> bool | None:
    """True if supported, False if not, None if the claim cannot be checked against ``pool``."""
    check = _SUPPORT_CHECKS[claim.kind]
    if any(check(claim.normalized, facts) for facts in pool):
        return True
    if claim.kind == "name" and pool:
        # A name is only checkable in its own script: an English answer over a Korean document
        # translates "근로기준법" to "Labor Standards Act", which no string match can confirm.
        script = "ko" if has_hangul(claim.normalized) else "en"
        if all(facts.language != script for facts in pool):
            return None
    return False


# ---------------------------------------------------------------------------------------------
# Public entry points


def _source_pool(sentence: str, indexed: Mapping[int, _SourceFacts]) -> list[_SourceFacts]:
    cited = cited_numbers(sentence)
    if cited is None:
        return list(indexed.values())
    # Unknown numbers are ignored; citing only unknown numbers leaves nothing to support a claim.
    return [indexed[n] for n in sorted(cited) if n in indexed]


def check_grounding(answer: str, sources: Mapping[int, str]) -> GroundingResult:
    """Check every claim of ``answer`` against the sources its sentence cites.

    ``sources`` maps a citation number to that source's text (include its title and section path
    if the answer may cite those). Each distinct source text is indexed once and kept in an LRU
    cache, since the same chunks come back for many questions. Deterministic, no I/O; safe to
    call from many threads.
    """
    indexed = {number: _source_facts(text) for number, text in sources.items()}
    unsupported: list[UnsupportedClaim] = []
    checked = 0
    for index, sentence in enumerate(split_sentences(answer)):
        claims = extract_claims(sentence)
        if not claims:
            continue
        pool = _source_pool(sentence, indexed)
        for claim in claims:
            verdict = _verdict(claim, pool)
            if verdict is None:
                continue
            checked += 1
            if not verdict:
                unsupported.append(UnsupportedClaim(index, sentence, claim.text, claim.kind))
    return GroundingResult(
        verified=not unsupported, unsupported=tuple(unsupported), checked_claims=checked
    )


# A line left holding only list markers, bullets or heading marks after its sentences were dropped.
_EMPTY_ITEM_RE = re.compile(
    r"[ \t]*(?:(?:#{1,6}|>|[-*+•·▪‣◦]|\(?[0-9]{1,3}[.)]|\(?[A-Za-z]\))[ \t]*)*"
)
_EXTRA_BLANK_LINES_RE = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


def _drop_sentences(answer: str, result: GroundingResult) -> str:
    spans = _sentence_spans(answer)
    drop: set[int] = set()
    for item in result.unsupported:
        index = item.sentence_index
        if index >= len(spans) or answer[slice(*spans[index])] != item.sentence:
            raise ValueError("grounding result does not belong to this answer")
        drop.add(index)
    text = answer
    for index in sorted(drop, reverse=True):  # right to left keeps earlier offsets valid
        start, end = spans[index]
        while end < len(text) and text[end] in " \t":
            end += 1
        text = text[:start] + text[end:]
    # Sentences never span lines, so line i of the result is line i of the answer.
    kept = [
        line.rstrip()
        for line, original in zip(text.split("\n"), answer.split("\n"), strict=True)
        if not (original.strip() and _EMPTY_ITEM_RE.fullmatch(line))
    ]
    return _EXTRA_BLANK_LINES_RE.sub("\n\n", "\n".join(kept)).strip()


def apply_policy(
    answer: str, result: GroundingResult, policy: GroundingPolicy, *, refusal: str
) -> str:
    """Act on a grounding result.

    ``flag`` returns the answer unchanged (the caller reports ``result``); ``drop`` removes every
    sentence holding an unsupported claim and returns ``refusal`` if no sentence is left;
    ``refuse`` returns ``refusal`` if any claim is unsupported.
    """
    if policy == "flag":
        return answer
    if policy == "refuse":
        return refusal if result.unsupported else answer
    if policy == "drop":
        if not result.unsupported:
            return answer
        remaining = _drop_sentences(answer, result)
        return remaining if split_sentences(remaining) else refusal
    raise ValueError(f"unknown grounding policy: {policy!r}")
